package event

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/parley-chat/parley/matrix/canonicaljson"
	"github.com/parley-chat/parley/matrix/id"
)

// ErrBadSignature wraps every reason a signature check fails.
var ErrBadSignature = errors.New("bad signature")

// KeyLookup returns the public key serverName published under keyID, for
// verifying a signature made at atTS (milliseconds since the epoch). atTS is
// 0 when the room version does not tie key validity to the event's
// origin_server_ts. The lookup decides validity (valid_until_ts, the 7-day
// cap of room version 5 and later, old_verify_keys' expired_ts) and returns
// an error for an unknown or expired key; such signatures are skipped, as the
// spec requires. The lookup must not block on I/O: fetch keys before
// verifying.
type KeyLookup func(serverName, keyID string, atTS int64) (ed25519.PublicKey, error)

// SignJSON signs a JSON object as serverName with the ed25519 key keyID
// (such as "ed25519:1"). The signature covers the canonical JSON of the
// object without its signatures and unsigned keys; it is merged into the
// object's existing signatures, replacing any earlier signature by the same
// server and key. The result is canonical JSON.
func SignJSON(serverName, keyID string, key ed25519.PrivateKey, objJSON []byte) ([]byte, error) {
	members, err := canonicalObject(objJSON)
	if err != nil {
		return nil, err
	}
	signed, err := signMembers(members, members, serverName, keyID, key)
	if err != nil {
		return nil, err
	}
	return joinObject(signed), nil
}

// signMembers signs the canonical object toSign (minus signatures and
// unsigned) and returns target with the signature merged into its
// signatures. Events sign their redacted form but carry the signature on the
// full form, hence two arguments.
func signMembers(toSign, target []member, serverName, keyID string, key ed25519.PrivateKey) ([]member, error) {
	if len(key) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("sign: private key has %d bytes, want %d", len(key), ed25519.PrivateKeySize)
	}
	if !strings.HasPrefix(keyID, "ed25519:") {
		return nil, fmt.Errorf("sign: key ID %q is not an ed25519 key ID", keyID)
	}
	message := joinObject(without(toSign, "signatures", "unsigned"))
	sig := ed25519.Sign(key, message)

	sigs := map[string]map[string]json.RawMessage{}
	if existing := find(target, "signatures"); existing != nil {
		if err := json.Unmarshal(existing, &sigs); err != nil || sigs == nil {
			return nil, fmt.Errorf("sign: signatures must be an object of objects: %v", err)
		}
	}
	if sigs[serverName] == nil {
		sigs[serverName] = map[string]json.RawMessage{}
	}
	encoded := make([]byte, 0, 90)
	encoded = append(encoded, '"')
	encoded = base64.RawStdEncoding.AppendEncode(encoded, sig)
	encoded = append(encoded, '"')
	sigs[serverName][keyID] = encoded
	sigsJSON, err := canonicaljson.Marshal(sigs)
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	return withMember(target, "signatures", sigsJSON), nil
}

// VerifyJSON checks that serverName signed the JSON object with the key
// keyID, whose public key is pub, following "Checking for a Signature" in
// the spec's appendices. A missing, malformed or wrong signature wraps
// ErrBadSignature.
func VerifyJSON(serverName, keyID string, pub ed25519.PublicKey, objJSON []byte) error {
	members, err := canonicalObject(objJSON)
	if err != nil {
		return err
	}
	sigs, err := parseSignatures(members)
	if err != nil {
		return err
	}
	sig, ok := sigs[serverName][keyID]
	if !ok {
		return fmt.Errorf("%w: no signature by %s with key %s", ErrBadSignature, serverName, keyID)
	}
	return verifyMessage(joinObject(without(members, "signatures", "unsigned")), serverName, keyID, pub, sig)
}

func verifyMessage(message []byte, serverName, keyID string, pub ed25519.PublicKey, sig string) error {
	if len(pub) != ed25519.PublicKeySize {
		return fmt.Errorf("%w: public key of %s %s has %d bytes", ErrBadSignature, serverName, keyID, len(pub))
	}
	raw, err := decodeBase64(sig)
	if err != nil || len(raw) != ed25519.SignatureSize {
		return fmt.Errorf("%w: signature by %s with key %s is not a base64 ed25519 signature", ErrBadSignature, serverName, keyID)
	}
	if !ed25519.Verify(pub, message, raw) {
		return fmt.Errorf("%w: signature by %s with key %s does not verify", ErrBadSignature, serverName, keyID)
	}
	return nil
}

// parseSignatures decodes the signatures object: server name → key ID →
// unpadded base64 signature.
func parseSignatures(members []member) (map[string]map[string]string, error) {
	raw := find(members, "signatures")
	if raw == nil {
		return nil, fmt.Errorf("%w: no signatures", ErrBadSignature)
	}
	var sigs map[string]map[string]string
	if err := json.Unmarshal(raw, &sigs); err != nil || sigs == nil {
		return nil, fmt.Errorf("%w: signatures must map server names to objects of strings", ErrBadSignature)
	}
	return sigs, nil
}

// canonicalObject canonicalises arbitrary JSON leniently and splits it,
// failing unless it is an object.
func canonicalObject(objJSON []byte) ([]member, error) {
	canon, err := canonicaljson.Canonicalize(objJSON)
	if err != nil {
		return nil, err
	}
	return splitObject(canon)
}

// SignEvent adds serverName's signature to an event of room version v and
// returns it as canonical JSON. As the spec requires, the signature covers
// the redacted event, so that it still verifies after a redaction; the
// content hash must already be in place (see AddContentHash), since hashes
// survive redaction and tie the signature to the full content.
func SignEvent(serverName, keyID string, key ed25519.PrivateKey, eventJSON []byte, v RoomVersionInfo) ([]byte, error) {
	members, err := canonicalMembers(eventJSON)
	if err != nil {
		return nil, err
	}
	signed, err := signEventMembers(members, serverName, keyID, key, v)
	if err != nil {
		return nil, err
	}
	return joinObject(signed), nil
}

func signEventMembers(members []member, serverName, keyID string, key ed25519.PrivateKey, v RoomVersionInfo) ([]member, error) {
	redacted, err := redactMembers(members, v)
	if err != nil {
		return nil, err
	}
	return signMembers(redacted, members, serverName, keyID, key)
}

// Sign returns a copy of the event with serverName's signature added, as a
// resident server does to a join in /send_join or an invited server to an
// invite. The event ID does not change: signatures are not part of the
// reference hash.
func (e *Event) Sign(serverName, keyID string, key ed25519.PrivateKey) (*Event, error) {
	members, err := e.members()
	if err != nil {
		return nil, err
	}
	signed, err := signEventMembers(members, serverName, keyID, key, e.version)
	if err != nil {
		return nil, err
	}
	out := *e
	out.json = joinObject(signed)
	if members, err = out.members(); err != nil {
		return nil, err
	}
	out.f = fields{}
	if err := out.parse(members); err != nil {
		return nil, err
	}
	return &out, nil
}

// RequiredSignatures lists the servers whose signatures an event needs
// ("Validating hashes and signatures on received events" in the
// server-server spec): the sender's server; in room versions 1 and 2 also
// the server in the event ID; and for a join through a restricted join rule
// (room version 8 on), the server of join_authorised_via_users_server.
//
// An invite made from a third-party invite (content.third_party_invite set)
// is exempt from the sender's server: the spec lets another server send it,
// and the auth rules check the identity server's signature instead.
// VerifyEventSignatures still asks for a valid signature by the sender's or
// the invited user's server, the two servers that create such invites.
//
// Servers that cannot be read from a malformed ID are left out;
// VerifyEventSignatures rejects such events.
func (e *Event) RequiredSignatures() []string {
	servers, _, _ := e.requiredSignatures()
	return servers
}

// requiredSignatures returns the servers that must all have signed and, for
// an invite made from a third-party invite, the servers one of which must
// have signed in place of the sender's.
func (e *Event) requiredSignatures() (servers, thirdPartyInviteSigners []string, _ error) {
	add := func(list *[]string, s string) {
		for _, have := range *list {
			if have == s {
				return
			}
		}
		*list = append(*list, s)
	}
	var errs []error
	sender, err := id.ParseUserID(e.f.Sender)
	if err != nil {
		errs = append(errs, err)
	}
	membership := ""
	if e.f.Type == "m.room.member" {
		membership, _ = jsonString(e.contentMember("membership"))
	}

	if membership == "invite" && e.contentMember("third_party_invite") != nil {
		if err == nil {
			add(&thirdPartyInviteSigners, string(sender.Server))
		}
		if e.f.StateKey != nil {
			if invitee, err := id.ParseUserID(*e.f.StateKey); err == nil {
				add(&thirdPartyInviteSigners, string(invitee.Server))
			}
		}
	} else if err == nil {
		add(&servers, string(sender.Server))
	}

	if e.version.EventIDFormat == EventIDFormatV1 {
		if evID, err := id.ParseEventIDFormat(e.eventID, id.EventIDFormatV1); err == nil {
			add(&servers, string(evID.Server))
		} else {
			errs = append(errs, err)
		}
	}

	if e.version.RestrictedJoins && membership == "join" {
		if raw := e.contentMember("join_authorised_via_users_server"); raw != nil {
			if via, ok := jsonString(raw); !ok {
				errs = append(errs, fmt.Errorf("join_authorised_via_users_server must be a string"))
			} else if user, err := id.ParseUserID(via); err != nil {
				errs = append(errs, fmt.Errorf("join_authorised_via_users_server: %w", err))
			} else {
				add(&servers, string(user.Server))
			}
		}
	}
	return servers, thirdPartyInviteSigners, errors.Join(errs...)
}

// VerifyEventSignatures checks the signatures an event needs (see
// RequiredSignatures) on its redacted form, so that a redacted copy verifies
// as well as the full event. For each server, every signature by a key the
// lookup knows must verify and at least one must exist; signatures by
// unknown or expired keys are skipped, and keys of algorithms other than
// ed25519 are ignored. In room versions that enforce key validity the lookup
// gets the event's origin_server_ts, otherwise 0. Failure wraps
// ErrBadSignature.
func VerifyEventSignatures(ev *Event, keys KeyLookup) error {
	servers, tpiSigners, err := ev.requiredSignatures()
	if err != nil {
		return fmt.Errorf("%w: cannot tell which servers must sign: %v", ErrBadSignature, err)
	}
	if len(servers) == 0 && len(tpiSigners) == 0 {
		return fmt.Errorf("%w: no server to check signatures of", ErrBadSignature)
	}
	members, err := ev.members()
	if err != nil {
		return err
	}
	redacted, err := redactMembers(members, ev.version)
	if err != nil {
		return err
	}
	sigs, err := parseSignatures(redacted)
	if err != nil {
		return err
	}
	message := joinObject(without(redacted, "signatures", "unsigned"))
	var atTS int64
	if ev.version.EnforceKeyValidity {
		atTS = ev.f.OriginServerTS
	}
	for _, server := range servers {
		if err := verifyServer(message, sigs[server], server, keys, atTS); err != nil {
			return err
		}
	}
	if len(tpiSigners) > 0 {
		var errs []error
		for _, server := range tpiSigners {
			err := verifyServer(message, sigs[server], server, keys, atTS)
			if err == nil {
				errs = nil
				break
			}
			errs = append(errs, err)
		}
		if errs != nil {
			return fmt.Errorf("%w: third-party invite signed by neither the sender's nor the invitee's server: %w",
				ErrBadSignature, errors.Join(errs...))
		}
	}
	return nil
}

// verifyServer checks one server's signatures over message.
func verifyServer(message []byte, serverSigs map[string]string, server string, keys KeyLookup, atTS int64) error {
	if len(serverSigs) == 0 {
		return fmt.Errorf("%w: no signature by %s", ErrBadSignature, server)
	}
	keyIDs := make([]string, 0, len(serverSigs))
	for keyID := range serverSigs {
		if strings.HasPrefix(keyID, "ed25519:") {
			keyIDs = append(keyIDs, keyID)
		}
	}
	sort.Strings(keyIDs) // deterministic lookups and error messages
	verified := false
	var skipped []error
	for _, keyID := range keyIDs {
		pub, err := keys(server, keyID, atTS)
		if err != nil || pub == nil {
			if err != nil {
				skipped = append(skipped, fmt.Errorf("%s %s: %w", server, keyID, err))
			}
			continue
		}
		if err := verifyMessage(message, server, keyID, pub, serverSigs[keyID]); err != nil {
			return err
		}
		verified = true
	}
	if !verified {
		if len(skipped) == 0 {
			return fmt.Errorf("%w: no ed25519 signature by %s", ErrBadSignature, server)
		}
		return fmt.Errorf("%w: no signature by %s with a known key: %w", ErrBadSignature, server, errors.Join(skipped...))
	}
	return nil
}

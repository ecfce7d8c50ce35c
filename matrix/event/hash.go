package event

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"github.com/parley-chat/parley/matrix/canonicaljson"
)

// ErrContentHashMismatch means an event's hashes.sha256 is missing, not
// base64, or not the hash of its content. The spec's answer is not to drop
// the event but to process its redacted form.
var ErrContentHashMismatch = errors.New("content hash mismatch")

// ContentHash returns the content hash of an event: the SHA-256 of its
// canonical JSON without the unsigned, signatures and hashes keys. It covers
// the whole unredacted event, so a receiver can tell whether it holds the
// full event or only its redacted form.
func ContentHash(eventJSON []byte) ([sha256.Size]byte, error) {
	members, err := canonicalMembers(eventJSON)
	if err != nil {
		return [sha256.Size]byte{}, err
	}
	return contentHashOf(members), nil
}

func contentHashOf(members []member) [sha256.Size]byte {
	h := sha256.New()
	hashObject(h, members, func(m member) bool {
		return m.is("unsigned") || m.is("signatures") || m.is("hashes")
	})
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return sum
}

// AddContentHash returns the event as canonical JSON with hashes set to
// {"sha256": <content hash>}, as done before signing an outgoing event.
func AddContentHash(eventJSON []byte) ([]byte, error) {
	members, err := canonicalMembers(eventJSON)
	if err != nil {
		return nil, err
	}
	return joinObject(withContentHash(members)), nil
}

func withContentHash(members []member) []member {
	sum := contentHashOf(members)
	hashes := make([]byte, 0, 60)
	hashes = append(hashes, `{"sha256":"`...)
	hashes = base64.RawStdEncoding.AppendEncode(hashes, sum[:])
	hashes = append(hashes, `"}`...)
	return withMember(members, "hashes", hashes)
}

// CheckContentHash reports whether the event's hashes.sha256 matches its
// content hash. Failure wraps ErrContentHashMismatch.
func CheckContentHash(eventJSON []byte) error {
	members, err := canonicalMembers(eventJSON)
	if err != nil {
		return err
	}
	return checkContentHash(members)
}

func checkContentHash(members []member) error {
	want, err := claimedContentHash(members)
	if err != nil {
		return err
	}
	got := contentHashOf(members)
	if !bytes.Equal(want, got[:]) {
		return fmt.Errorf("%w: hashes.sha256 is not the hash of the event", ErrContentHashMismatch)
	}
	return nil
}

// claimedContentHash decodes hashes.sha256 from the event members.
func claimedContentHash(members []member) ([]byte, error) {
	hashesJSON := find(members, "hashes")
	if len(hashesJSON) == 0 || hashesJSON[0] != '{' {
		return nil, fmt.Errorf("%w: no hashes object", ErrContentHashMismatch)
	}
	hashes, err := splitObject(hashesJSON)
	if err != nil {
		return nil, fmt.Errorf("%w: hashes: %v", ErrContentHashMismatch, err)
	}
	encoded, ok := jsonString(find(hashes, "sha256"))
	if !ok {
		return nil, fmt.Errorf("%w: no hashes.sha256 string", ErrContentHashMismatch)
	}
	sum, err := decodeBase64(encoded)
	if err != nil || len(sum) != sha256.Size {
		return nil, fmt.Errorf("%w: hashes.sha256 is not a base64 SHA-256 hash", ErrContentHashMismatch)
	}
	return sum, nil
}

// decodeBase64 decodes standard base64 with or without padding, as the spec
// asks receivers to accept both.
func decodeBase64(s string) ([]byte, error) {
	return base64.RawStdEncoding.DecodeString(strings.TrimRight(s, "="))
}

// ReferenceHash returns the reference hash of an event in room version v:
// the SHA-256 of the canonical JSON of its redacted form without signatures
// and unsigned. Event IDs from room version 3 on are derived from it, and
// room versions 1 and 2 reference prev and auth events by it.
func ReferenceHash(eventJSON []byte, v RoomVersionInfo) ([sha256.Size]byte, error) {
	members, err := canonicalMembers(eventJSON)
	if err != nil {
		return [sha256.Size]byte{}, err
	}
	return referenceHashOf(members, v)
}

func referenceHashOf(members []member, v RoomVersionInfo) ([sha256.Size]byte, error) {
	redacted, err := redactMembers(members, v)
	if err != nil {
		return [sha256.Size]byte{}, err
	}
	h := sha256.New()
	// Redaction already strips unsigned (and with it the historical age_ts,
	// which lived there or at the top level), so only signatures is left.
	hashObject(h, redacted, func(m member) bool { return m.is("signatures") || m.is("unsigned") })
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return sum, nil
}

// ComputeEventID returns the ID of an event in room version v: the event_id
// key in room versions 1 and 2, otherwise '$' and the reference hash in
// unpadded base64, standard in room version 3 and URL-safe from version 4.
func ComputeEventID(eventJSON []byte, v RoomVersionInfo) (string, error) {
	members, err := canonicalMembers(eventJSON)
	if err != nil {
		return "", err
	}
	return eventIDOf(members, v)
}

func eventIDOf(members []member, v RoomVersionInfo) (string, error) {
	switch v.EventIDFormat {
	case EventIDFormatV1:
		id, ok := jsonString(find(members, "event_id"))
		if !ok || id == "" {
			return "", badEvent("room version %s events must carry an event_id string", v.ID)
		}
		return id, nil
	case EventIDFormatV3, EventIDFormatV4:
		sum, err := referenceHashOf(members, v)
		if err != nil {
			return "", err
		}
		return eventIDFromReferenceHash(sum, v.EventIDFormat), nil
	default:
		return "", fmt.Errorf("unknown event ID format %d", v.EventIDFormat)
	}
}

func eventIDFromReferenceHash(sum [sha256.Size]byte, f EventIDFormat) string {
	enc := base64.RawURLEncoding
	if f == EventIDFormatV3 {
		enc = base64.RawStdEncoding
	}
	b := make([]byte, 0, 44)
	b = append(b, '$')
	b = enc.AppendEncode(b, sum[:])
	return string(b)
}

// canonicalMembers canonicalises arbitrary event JSON leniently and splits
// the resulting object.
func canonicalMembers(eventJSON []byte) ([]member, error) {
	canon, err := canonicaljson.Canonicalize(eventJSON)
	if err != nil {
		return nil, badEvent("%v", err)
	}
	members, err := splitObject(canon)
	if err != nil {
		return nil, badEvent("%v", err)
	}
	return members, nil
}

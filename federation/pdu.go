package federation

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/parley-chat/parley/federation/keyring"
	"github.com/parley-chat/parley/matrix/event"
)

// CheckPDU parses a PDU received from another server and runs the checks
// the spec asks of every received PDU before the auth rules: format (strict
// canonical JSON and size limits), signatures of every server that must
// sign it (fetching their keys), and the content hash, whose mismatch means
// the redacted form is used instead.
func (a *API) CheckPDU(ctx context.Context, raw json.RawMessage, version event.RoomVersion) (*event.Event, error) {
	ev, err := event.NewEventFromUntrustedJSON(raw, version)
	if err != nil {
		return nil, err
	}
	return a.checkParsedPDU(ctx, ev)
}

// checkParsedPDU is CheckPDU for an event already parsed (and perhaps
// signed by us, as the authorising server of a restricted join).
func (a *API) checkParsedPDU(ctx context.Context, ev *event.Event) (*event.Event, error) {
	if err := a.verifySignatures(ctx, ev); err != nil {
		return nil, err
	}
	if !ev.ContentHashMatches() {
		a.cfg.Log.WithField("event_id", ev.EventID()).Info("content hash mismatch: using the redacted event")
		return ev.Redacted()
	}
	return ev, nil
}

// verifySignatures fetches the keys an event's required signatures were
// made with, then verifies them.
func (a *API) verifySignatures(ctx context.Context, ev *event.Event) error {
	var sigs struct {
		Signatures map[string]map[string]json.RawMessage `json:"signatures"`
	}
	if err := json.Unmarshal(ev.JSON(), &sigs); err != nil {
		return fmt.Errorf("%w: %v", event.ErrBadSignature, err)
	}
	var atTS int64
	if ev.Version().EnforceKeyValidity {
		atTS = ev.OriginServerTS()
	}
	var reqs []keyring.KeyRequest
	for server, keys := range sigs.Signatures {
		for keyID := range keys {
			if strings.HasPrefix(keyID, "ed25519:") {
				reqs = append(reqs, keyring.KeyRequest{ServerName: server, KeyID: keyID, AtTS: atTS})
			}
		}
	}
	// Keys that cannot be found make the verification below fail for the
	// servers that need them; others are usable whatever this returns.
	_ = a.keyring.Fetch(ctx, reqs)
	return event.VerifyEventSignatures(ev, a.keyring.Lookup)
}

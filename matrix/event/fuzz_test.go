package event_test

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"testing"

	"github.com/parley-chat/parley/matrix/canonicaljson"
	"github.com/parley-chat/parley/matrix/event"
)

// FuzzNewEventFromUntrustedJSON feeds arbitrary bytes to the federation
// parser under every room version. It must never panic, never accept what
// the strict canonical JSON validator refuses in room versions 6 and later,
// and every event it accepts must be self-consistent: canonical, within the
// size limit, with a stable ID that survives re-parsing and redaction.
func FuzzNewEventFromUntrustedJSON(f *testing.F) {
	for i, v := range event.KnownRoomVersions() {
		for _, p := range roundTripProtos(v) {
			f.Add(buildTestEvent(f, v, p).JSON(), uint8(i))
		}
	}
	f.Add([]byte(`{"type":"m.room.create","content":{},"depth":-0}`), uint8(11))
	f.Add([]byte(`{"a":1,"a":2}`), uint8(5))
	f.Add([]byte(`[`), uint8(0))

	versions := event.KnownRoomVersions()
	noKeys := event.KeyLookup(func(string, string, int64) (ed25519.PublicKey, error) {
		return nil, errors.New("no keys")
	})
	f.Fuzz(func(t *testing.T, data []byte, vi uint8) {
		v := versions[int(vi)%len(versions)]
		info, _ := v.Info()

		// Redaction of arbitrary input must not panic either.
		if red, err := event.Redact(data, info); err == nil {
			again, err := event.Redact(red, info)
			if err != nil || !bytes.Equal(again, red) {
				t.Fatalf("redaction not idempotent: %s → %s (%v)", red, again, err)
			}
		}

		ev, err := event.NewEventFromUntrustedJSON(data, v)
		if err != nil {
			if !errors.Is(err, event.ErrBadEvent) {
				t.Fatalf("error %v does not wrap ErrBadEvent", err)
			}
			return
		}
		if info.StrictCanonicalJSON {
			if err := (canonicaljson.Options{Strict: true, MaxBytes: -1}).Validate(data); err != nil {
				t.Fatalf("accepted JSON the strict validator refuses: %v", err)
			}
		}
		canon, err := canonicaljson.Canonicalize(ev.JSON())
		if err != nil || !bytes.Equal(canon, ev.JSON()) {
			t.Fatalf("JSON() is not canonical: %s", ev.JSON())
		}
		if len(ev.JSON()) > event.MaxEventSize {
			t.Fatalf("accepted %d bytes", len(ev.JSON()))
		}
		again, err := event.NewEventFromUntrustedJSON(ev.JSON(), v)
		if err != nil || again.EventID() != ev.EventID() || again.ContentHashMatches() != ev.ContentHashMatches() {
			t.Fatalf("re-parsing the accepted JSON differs: %v", err)
		}
		red, err := ev.Redacted()
		if err != nil {
			t.Fatalf("Redacted: %v", err)
		}
		if red.EventID() != ev.EventID() {
			t.Fatal("redaction changed the ID")
		}
		if id, err := event.ComputeEventID(red.JSON(), info); err != nil || id != ev.EventID() {
			t.Fatalf("ID of the redacted JSON %s, want %s (%v)", id, ev.EventID(), err)
		}
		_ = ev.RequiredSignatures()
		if err := event.VerifyEventSignatures(ev, noKeys); err == nil {
			t.Fatal("verified without keys")
		}
		_, _ = ev.Membership()
		_ = ev.Redacts()
		_ = ev.RoomID()
	})
}

package event_test

import (
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"

	"github.com/parley-chat/parley/matrix/event"
)

// idTestEvent is an event whose redacted canonical form, written out by hand
// below, hashes to an ID containing both '+' and '/' in standard base64, so
// that the v3 and v4 encodings visibly differ.
const idTestEvent = `{
	"type": "m.room.message",
	"room_id": "!r:example.org",
	"sender": "@u:example.org",
	"origin": "example.org",
	"origin_server_ts": 1000000,
	"depth": %d,
	"prev_events": ["$p"],
	"auth_events": ["$a"],
	"content": {"body": "redacted away"},
	"hashes": {"sha256": "ignored-by-the-reference-hash-only-through-redaction"},
	"signatures": {"example.org": {"ed25519:1": "not part of the reference hash"}},
	"unsigned": {"age": 1}
}`

const idTestRedacted = `{"auth_events":["$a"],"content":{},"depth":%d,` +
	`"hashes":{"sha256":"ignored-by-the-reference-hash-only-through-redaction"},` +
	`"origin":"example.org","origin_server_ts":1000000,"prev_events":["$p"],` +
	`"room_id":"!r:example.org","sender":"@u:example.org","type":"m.room.message"}`

func TestEventIDFormats(t *testing.T) {
	// Find a depth whose reference hash has '+' and '/' in standard base64.
	depth := 0
	var sum [32]byte
	for d := 1; ; d++ {
		sum = sha256.Sum256([]byte(sprintf(idTestRedacted, d)))
		if s := base64.RawStdEncoding.EncodeToString(sum[:]); strings.Contains(s, "+") && strings.Contains(s, "/") {
			depth = d
			break
		}
	}
	in := []byte(sprintf(idTestEvent, depth))
	wantV3 := "$" + base64.RawStdEncoding.EncodeToString(sum[:])
	wantV4 := "$" + base64.RawURLEncoding.EncodeToString(sum[:])

	for _, v := range event.KnownRoomVersions() {
		info, _ := v.Info()
		if info.EventIDFormat == event.EventIDFormatV1 || info.Redaction == event.RedactionV11 {
			continue // v1/v2 carry IDs; v11 redaction drops origin, so another hash
		}
		got, err := event.ComputeEventID(in, info)
		if err != nil {
			t.Fatal(err)
		}
		want := wantV4
		if info.EventIDFormat == event.EventIDFormatV3 {
			want = wantV3
		}
		if got != want {
			t.Errorf("v%s: event ID %s, want %s", v, got, want)
		}
		ref, err := event.ReferenceHash(in, info)
		if err != nil || ref != sum {
			t.Errorf("v%s: reference hash %x, want %x (%v)", v, ref, sum, err)
		}
	}

	// Room version 11 no longer protects origin.
	info11, _ := event.RoomVersion("11").Info()
	sum11 := sha256.Sum256([]byte(strings.Replace(sprintf(idTestRedacted, depth), `"origin":"example.org",`, "", 1)))
	if got, _ := event.ComputeEventID(in, info11); got != "$"+base64.RawURLEncoding.EncodeToString(sum11[:]) {
		t.Errorf("v11: event ID %s", got)
	}

	// Room versions 1 and 2 read the ID from the event.
	info1, _ := event.RoomVersion("1").Info()
	if _, err := event.ComputeEventID(in, info1); err == nil {
		t.Error("v1 event without event_id got an ID")
	}
	withID := setJSON(t, in, "event_id", `"$carried:example.org"`)
	for _, v := range []event.RoomVersion{"1", "2"} {
		info, _ := v.Info()
		if got, err := event.ComputeEventID(withID, info); err != nil || got != "$carried:example.org" {
			t.Errorf("v%s: ComputeEventID = %q, %v", v, got, err)
		}
	}
}

// TestEventIDPinned pins the ID of one fixed event per format, so that an
// accidental change to hashing or redaction shows up even where the
// differential tests would not run.
func TestEventIDPinned(t *testing.T) {
	in := []byte(`{"auth_events":[],"content":{"creator":"@alice:example.org","room_version":"10"},` +
		`"depth":1,"hashes":{"sha256":"2K0BSpSTnTw0wXWWVyYhZVnsybsQrSqQnIWx3ZPY4gY"},"origin":"example.org",` +
		`"origin_server_ts":1600000000000,"prev_events":[],"room_id":"!r:example.org","sender":"@alice:example.org",` +
		`"signatures":{},"state_key":"","type":"m.room.create"}`)
	for _, tt := range []struct {
		version event.RoomVersion
		want    string
	}{
		{"3", pinnedV3},
		{"10", pinnedV10},
		{"11", pinnedV11},
	} {
		info, _ := tt.version.Info()
		got, err := event.ComputeEventID(in, info)
		if err != nil || got != tt.want {
			t.Errorf("v%s: %s, want %s (%v)", tt.version, got, tt.want, err)
		}
	}
}

// Computed independently with Python's json.dumps(sort_keys=True,
// separators=(",", ":"), ensure_ascii=False) and hashlib over the redacted
// event (content reduced to creator before v11; origin dropped in v11).
const (
	pinnedV3  = "$uXdnh5RrYtGAkt4pbinaQSlvDoPZtAU6zcSytuVnAzI"
	pinnedV10 = "$uXdnh5RrYtGAkt4pbinaQSlvDoPZtAU6zcSytuVnAzI"
	pinnedV11 = "$skEO2BLFyf5dlef0PFKeopculr32rbCf6J7n8-kmyzE"
)

func sprintf(format string, d int) string { return fmt.Sprintf(format, d) }

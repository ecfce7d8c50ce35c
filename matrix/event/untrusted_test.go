package event_test

import (
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/parley-chat/parley/matrix/canonicaljson"
	"github.com/parley-chat/parley/matrix/event"
)

// baseUntrusted returns a valid event of room version v, built and signed.
func baseUntrusted(t testing.TB, v event.RoomVersion) []byte {
	t.Helper()
	return buildTestEvent(t, v, event.ProtoEvent{
		Type: "m.room.member", StateKey: ptr("@bob:b.example"), Sender: "@alice:a.example",
		Content: []byte(`{"membership":"invite"}`),
	}).JSON()
}

func TestUntrustedRejects(t *testing.T) {
	tests := []struct {
		name     string
		versions []event.RoomVersion
		key      string // top-level key to set ("" value deletes it)
		value    string
		tooLarge bool
	}{
		{name: "missing type", key: "type"},
		{name: "missing sender", key: "sender"},
		{name: "missing content", key: "content"},
		{name: "missing prev_events", key: "prev_events"},
		{name: "missing auth_events", key: "auth_events"},
		{name: "missing depth", key: "depth"},
		{name: "missing origin_server_ts", key: "origin_server_ts"},
		{name: "missing hashes", key: "hashes"},
		{name: "missing signatures", key: "signatures"},
		{name: "missing room_id", key: "room_id"},
		{name: "missing event_id", versions: []event.RoomVersion{"1", "2"}, key: "event_id"},
		{name: "type not a string", key: "type", value: `5`},
		{name: "empty type", key: "type", value: `""`},
		{name: "state_key null", key: "state_key", value: `null`},
		{name: "state_key not a string", key: "state_key", value: `{}`},
		{name: "content an array", key: "content", value: `[]`},
		{name: "content null", key: "content", value: `null`},
		{name: "depth a string", key: "depth", value: `"5"`},
		{name: "depth negative", key: "depth", value: `-1`},
		{name: "origin_server_ts a string", key: "origin_server_ts", value: `"1"`},
		{name: "unsigned not an object", key: "unsigned", value: `[]`},
		{name: "hashes not an object", key: "hashes", value: `"x"`},
		{name: "hashes without sha256", key: "hashes", value: `{"sha512":"x"}`},
		{name: "hashes.sha256 not a string", key: "hashes", value: `{"sha256":5}`},
		{name: "signatures not nested objects", key: "signatures", value: `{"a.example":"x"}`},
		{name: "signature not a string", key: "signatures", value: `{"a.example":{"ed25519:a":1}}`},
		{name: "sender not a user ID", key: "sender", value: `"alice"`},
		{name: "sender without server", key: "sender", value: `"@alice"`},
		{name: "sender with bad server", key: "sender", value: `"@alice:bad server"`},
		{name: "sender over 255 bytes", key: "sender", value: `"@` + strings.Repeat("a", 245) + `:a.example"`},
		{name: "type over 255 bytes", key: "type", value: `"` + strings.Repeat("t", 256) + `"`},
		// The limits are in bytes: 128 two-byte characters are 256 bytes.
		{name: "state_key over 255 bytes", key: "state_key", value: `"` + strings.Repeat("é", 128) + `"`},
		{name: "room_id not a room ID", key: "room_id", value: `"#alias:a.example"`},
		{name: "room_id without server before v12", versions: versionsUpTo(11), key: "room_id", value: `"!` + urlHash("x") + `"`},
		{name: "room_id with server in v12", versions: []event.RoomVersion{"12"}, key: "room_id", value: `"!room:a.example"`},
		{name: "redacts not a string", versions: versionsUpTo(10), key: "redacts", value: `5`},
		{name: "event_id not an event ID", versions: []event.RoomVersion{"1", "2"}, key: "event_id", value: `"abc"`},
		{name: "prev_events not a list", key: "prev_events", value: `{}`},
		{name: "prev_event ID malformed", versions: versionsFrom(3), key: "prev_events", value: `["nope"]`},
		{name: "prev_event ID of the v1 format", versions: versionsFrom(3), key: "prev_events", value: `["$x:a.example"]`},
		{name: "prev_event IDs as strings in v1", versions: []event.RoomVersion{"1", "2"}, key: "prev_events", value: `["$x:a.example"]`},
		{name: "prev_event pair without hashes", versions: []event.RoomVersion{"1", "2"}, key: "prev_events", value: `[["$x:a.example"]]`},
		{name: "prev_event pair with a string hash", versions: []event.RoomVersion{"1", "2"}, key: "prev_events", value: `[["$x:a.example","h"]]`},
		{name: "21 prev_events", key: "prev_events"},
		{name: "11 auth_events", key: "auth_events"},
		{name: "float", versions: versionsFrom(6), key: "content", value: `{"membership":"invite","f":1.5}`},
		{name: "integer out of range", versions: versionsFrom(6), key: "content", value: `{"membership":"invite","n":9007199254740992}`},
		{name: "depth out of range", versions: versionsFrom(6), key: "depth", value: `9007199254740992`},
		{name: "too large", key: "content", tooLarge: true},
	}
	for _, tt := range tests {
		versions := tt.versions
		if versions == nil {
			versions = event.KnownRoomVersions()
		}
		for _, v := range versions {
			t.Run(fmt.Sprintf("%s/v%s", tt.name, v), func(t *testing.T) {
				base := baseUntrusted(t, v)
				var in []byte
				switch {
				case tt.tooLarge:
					in = padToSize(t, base, event.MaxEventSize+1)
				case strings.HasPrefix(tt.name, "21 "), strings.HasPrefix(tt.name, "11 "):
					in = setJSON(t, base, tt.key, refList(v, map[string]int{"prev_events": 21, "auth_events": 11}[tt.key]))
				default:
					in = setJSON(t, base, tt.key, tt.value)
				}
				ev, err := event.NewEventFromUntrustedJSON(in, v)
				if err == nil {
					t.Fatalf("accepted %s", ev.JSON())
				}
				if !errors.Is(err, event.ErrBadEvent) {
					t.Errorf("error %v does not wrap ErrBadEvent", err)
				}
				if tt.tooLarge && !errors.Is(err, event.ErrEventTooLarge) {
					t.Errorf("error %v does not wrap ErrEventTooLarge", err)
				}
			})
		}
	}
}

func TestUntrustedAccepts(t *testing.T) {
	tests := []struct {
		name     string
		versions []event.RoomVersion
		key      string
		value    string
		size     int
	}{
		{name: "no state_key", key: "state_key"},
		{name: "no unsigned", key: "unsigned"},
		{name: "unknown top-level keys", key: "org.example.extra", value: `{"x":[1,2]}`},
		{name: "type of 255 bytes", key: "type", value: `"` + strings.Repeat("t", 255) + `"`},
		{name: "state_key of 255 bytes", key: "state_key", value: `"` + strings.Repeat("é", 127) + `x"`},
		{name: "20 prev_events", key: "prev_events", value: "20"},
		{name: "10 auth_events", key: "auth_events", value: "10"},
		{name: "exactly the size limit", size: event.MaxEventSize},
		// Room versions 1 to 5 predate strict canonical JSON and must still
		// be processed.
		{name: "float", versions: versionsUpTo(5), key: "unsigned", value: `{"f":1.5}`},
		{name: "big integer", versions: versionsUpTo(5), key: "org.example.n", value: `12345678901234567890`},
		{name: "depth beyond 2^53", versions: versionsUpTo(5), key: "depth", value: `9007199254740993`},
		// From v11 on a top-level redacts is just an unknown key.
		{name: "top-level redacts of any type", versions: versionsFrom(11), key: "redacts", value: `5`},
		{name: "origin of any type", key: "origin", value: `[1]`},
	}
	for _, tt := range tests {
		versions := tt.versions
		if versions == nil {
			versions = event.KnownRoomVersions()
		}
		for _, v := range versions {
			t.Run(fmt.Sprintf("%s/v%s", tt.name, v), func(t *testing.T) {
				base := baseUntrusted(t, v)
				var in []byte
				switch {
				case tt.size > 0:
					in = padToSize(t, base, tt.size)
				case tt.value == "20" || tt.value == "10":
					n := map[string]int{"20": 20, "10": 10}[tt.value]
					in = setJSON(t, base, tt.key, refList(v, n))
				default:
					in = setJSON(t, base, tt.key, tt.value)
				}
				ev, err := event.NewEventFromUntrustedJSON(in, v)
				if err != nil {
					t.Fatalf("rejected: %v", err)
				}
				if tt.size > 0 && len(ev.JSON()) != tt.size {
					t.Errorf("size %d", len(ev.JSON()))
				}
			})
		}
	}
}

func TestUntrustedContentHashMismatch(t *testing.T) {
	for _, v := range event.KnownRoomVersions() {
		t.Run("v"+string(v), func(t *testing.T) {
			base := baseUntrusted(t, v)
			for name, in := range map[string][]byte{
				"altered content": setJSON(t, base, "content", `{"membership":"invite","displayname":"forged"}`),
				"wrong hash":      setJSON(t, base, "hashes", `{"sha256":"`+b64(make([]byte, 32))+`"}`),
				"hash not base64": setJSON(t, base, "hashes", `{"sha256":"!!"}`),
				"hash too short":  setJSON(t, base, "hashes", `{"sha256":"AAAA"}`),
			} {
				ev, err := event.NewEventFromUntrustedJSON(in, v)
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				if ev.ContentHashMatches() {
					t.Errorf("%s: ContentHashMatches", name)
				}
				if err := event.CheckContentHash(ev.JSON()); !errors.Is(err, event.ErrContentHashMismatch) {
					t.Errorf("%s: CheckContentHash = %v", name, err)
				}
				red, err := ev.Redacted()
				if err != nil {
					t.Fatalf("%s: Redacted: %v", name, err)
				}
				if string(red.Content()) != `{"membership":"invite"}` {
					t.Errorf("%s: redacted content %s", name, red.Content())
				}
			}
			// A padded hash is accepted: the spec asks decoders to take both.
			ev, err := event.NewEventFromUntrustedJSON(base, v)
			if err != nil || !ev.ContentHashMatches() {
				t.Fatalf("base event: %v", err)
			}
			sum, _ := event.ContentHash(base)
			padded := setJSON(t, base, "hashes", `{"sha256":"`+base64.StdEncoding.EncodeToString(sum[:])+`"}`)
			if err := event.CheckContentHash(padded); err != nil {
				t.Errorf("padded hash: %v", err)
			}
		})
	}
}

// TestUntrustedStrictMatchesValidator: from room version 6 on, whatever the
// strict canonical JSON validator refuses is refused.
func TestUntrustedStrictMatchesValidator(t *testing.T) {
	base := string(baseUntrusted(t, "10"))
	for _, in := range []string{
		strings.Replace(base, `"depth":7`, `"depth":7,"depth":7`, 1),
		strings.Replace(base, `"depth":7`, `"depth":7.0`, 1),
		strings.Replace(base, `"depth":7`, `"depth":7e0`, 1),
		strings.Replace(base, `"depth":7`, `"depth":7,"x":-9007199254740992`, 1),
		strings.Replace(base, `"membership":"invite"`, `"membership":"invite","membership":"join"`, 1),
	} {
		if err := (canonicaljson.Options{Strict: true}).Validate([]byte(in)); err == nil {
			t.Fatalf("validator accepts %s", in)
		}
		if _, err := event.NewEventFromUntrustedJSON([]byte(in), "10"); err == nil {
			t.Errorf("accepted %s", in)
		}
	}
}

func TestTrustedConstructors(t *testing.T) {
	for _, v := range event.KnownRoomVersions() {
		built := buildTestEvent(t, v, event.ProtoEvent{Type: "m.room.message", Sender: "@alice:a.example", Content: []byte(`{"body":"x"}`)})
		// Non-canonical input (white space, key order) gives the same event.
		var pretty strings.Builder
		pretty.WriteString("{\n")
		pretty.WriteString(strings.ReplaceAll(string(built.JSON()[1:]), ",\"", ",\n  \""))
		ev, err := event.NewEventFromTrustedJSON([]byte(pretty.String()), v)
		if err != nil {
			t.Fatal(err)
		}
		if ev.EventID() != built.EventID() || string(ev.JSON()) != string(built.JSON()) || !ev.ContentHashMatches() {
			t.Errorf("v%s: trusted parse differs", v)
		}
		withID, err := event.NewEventFromTrustedJSONWithEventID("$given", built.JSON(), v)
		if err != nil {
			t.Fatal(err)
		}
		if withID.EventID() != "$given" || !withID.ContentHashMatches() {
			t.Errorf("v%s: WithEventID: %s", v, withID.EventID())
		}
	}
	if _, err := event.NewEventFromTrustedJSON([]byte(`{}`), "99"); err == nil {
		t.Error("unknown room version accepted")
	}
}

func versionsUpTo(n int) []event.RoomVersion { return event.KnownRoomVersions()[:n] }
func versionsFrom(n int) []event.RoomVersion { return event.KnownRoomVersions()[n-1:] }

func urlHash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// refList returns a prev_events/auth_events value with n entries.
func refList(v event.RoomVersion, n int) string {
	info, _ := v.Info()
	parts := make([]string, n)
	for i := range parts {
		id := fakeEventID(v, fmt.Sprint("ref", i))
		if info.EventIDFormat == event.EventIDFormatV1 {
			parts[i] = `["` + id + `",{"sha256":"` + urlHash(id) + `"}]`
		} else {
			parts[i] = `"` + id + `"`
		}
	}
	return "[" + strings.Join(parts, ",") + "]"
}

// padToSize adds an unsigned padding string so that the canonical event is
// exactly size bytes.
func padToSize(t testing.TB, base []byte, size int) []byte {
	t.Helper()
	probe := setJSON(t, base, "unsigned", `{"pad":""}`)
	pad := size - len(probe)
	if pad < 0 {
		t.Fatalf("event already %d bytes", len(probe))
	}
	return setJSON(t, base, "unsigned", `{"pad":"`+strings.Repeat("p", pad)+`"}`)
}

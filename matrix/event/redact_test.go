package event_test

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/parley-chat/parley/matrix/event"
)

// sinkContent holds every content key any redaction algorithm keeps for any
// event type, plus keys none keeps (body, notifications), so that one event
// per type shows exactly which keys each algorithm keeps.
const sinkContent = `{
	"allow": [{"room_id": "!other:example.org", "type": "m.room_membership"}],
	"aliases": ["#a:example.org"],
	"ban": 50,
	"body": "hello",
	"creator": "@alice:example.org",
	"events": {"m.room.name": 50},
	"events_default": 0,
	"history_visibility": "shared",
	"invite": 0,
	"join_authorised_via_users_server": "@bob:example.org",
	"join_rule": "restricted",
	"kick": 50,
	"m.federate": true,
	"membership": "join",
	"notifications": {"room": 50},
	"redact": 50,
	"redacts": "$target:example.org",
	"room_version": "1",
	"state_default": 50,
	"third_party_invite": {"display_name": "carol", "signed": {"mxid": "@carol:example.org", "token": "t"}},
	"users": {"@alice:example.org": 100},
	"users_default": 0
}`

// sinkEvent has every top-level key any algorithm keeps and some none
// keeps (unsigned, redacts, age_ts, an unknown key).
func sinkEvent(evType string) string {
	return `{
		"age_ts": 5,
		"auth_events": ["$a:example.org"],
		"content": ` + sinkContent + `,
		"depth": 5,
		"event_id": "$ev:example.org",
		"extra": {"x": 1},
		"hashes": {"sha256": "abc"},
		"membership": "join",
		"origin": "example.org",
		"origin_server_ts": 1234,
		"prev_events": ["$p:example.org"],
		"prev_state": [],
		"redacts": "$target:example.org",
		"room_id": "!room:example.org",
		"sender": "@alice:example.org",
		"signatures": {"example.org": {"ed25519:1": "sig"}},
		"state_key": "",
		"type": "` + evType + `",
		"unsigned": {"age": 5}
	}`
}

// Expected top-level keys (besides content) after redaction.
const (
	keptTopV1 = `"auth_events": ["$a:example.org"], "depth": 5, "event_id": "$ev:example.org",
		"hashes": {"sha256": "abc"}, "membership": "join", "origin": "example.org",
		"origin_server_ts": 1234, "prev_events": ["$p:example.org"], "prev_state": [],
		"room_id": "!room:example.org", "sender": "@alice:example.org",
		"signatures": {"example.org": {"ed25519:1": "sig"}}, "state_key": ""`
	keptTopV11 = `"auth_events": ["$a:example.org"], "depth": 5, "event_id": "$ev:example.org",
		"hashes": {"sha256": "abc"}, "origin_server_ts": 1234, "prev_events": ["$p:example.org"],
		"room_id": "!room:example.org", "sender": "@alice:example.org",
		"signatures": {"example.org": {"ed25519:1": "sig"}}, "state_key": ""`
)

const (
	powerLevelsV1 = `{"ban": 50, "events": {"m.room.name": 50}, "events_default": 0, "kick": 50,
		"redact": 50, "state_default": 50, "users": {"@alice:example.org": 100}, "users_default": 0}`
	powerLevelsV11 = `{"ban": 50, "events": {"m.room.name": 50}, "events_default": 0, "invite": 0,
		"kick": 50, "redact": 50, "state_default": 50, "users": {"@alice:example.org": 100}, "users_default": 0}`
)

// redactionCases gives, per redaction algorithm, the expected redacted
// content of the sink event for each event type.
var redactionCases = []struct {
	algorithm string
	versions  []event.RoomVersion
	top       string
	content   map[string]string
}{
	{
		algorithm: "v1",
		versions:  []event.RoomVersion{"1", "2", "3", "4", "5"},
		top:       keptTopV1,
		content: map[string]string{
			"m.room.member":             `{"membership": "join"}`,
			"m.room.create":             `{"creator": "@alice:example.org"}`,
			"m.room.join_rules":         `{"join_rule": "restricted"}`,
			"m.room.power_levels":       powerLevelsV1,
			"m.room.aliases":            `{"aliases": ["#a:example.org"]}`,
			"m.room.history_visibility": `{"history_visibility": "shared"}`,
			"m.room.redaction":          `{}`,
			"m.room.message":            `{}`,
			"m.room.name":               `{}`,
		},
	},
	{
		algorithm: "v6 (aliases lose their meaning)",
		versions:  []event.RoomVersion{"6", "7"},
		top:       keptTopV1,
		content: map[string]string{
			"m.room.member":             `{"membership": "join"}`,
			"m.room.create":             `{"creator": "@alice:example.org"}`,
			"m.room.join_rules":         `{"join_rule": "restricted"}`,
			"m.room.power_levels":       powerLevelsV1,
			"m.room.aliases":            `{}`,
			"m.room.history_visibility": `{"history_visibility": "shared"}`,
			"m.room.redaction":          `{}`,
			"m.room.message":            `{}`,
		},
	},
	{
		algorithm: "v8 (join rules keep allow)",
		versions:  []event.RoomVersion{"8"},
		top:       keptTopV1,
		content: map[string]string{
			"m.room.member":             `{"membership": "join"}`,
			"m.room.create":             `{"creator": "@alice:example.org"}`,
			"m.room.join_rules":         `{"allow": [{"room_id": "!other:example.org", "type": "m.room_membership"}], "join_rule": "restricted"}`,
			"m.room.power_levels":       powerLevelsV1,
			"m.room.aliases":            `{}`,
			"m.room.history_visibility": `{"history_visibility": "shared"}`,
			"m.room.redaction":          `{}`,
			"m.room.message":            `{}`,
		},
	},
	{
		algorithm: "v9 (members keep join_authorised_via_users_server)",
		versions:  []event.RoomVersion{"9", "10"},
		top:       keptTopV1,
		content: map[string]string{
			"m.room.member":             `{"join_authorised_via_users_server": "@bob:example.org", "membership": "join"}`,
			"m.room.create":             `{"creator": "@alice:example.org"}`,
			"m.room.join_rules":         `{"allow": [{"room_id": "!other:example.org", "type": "m.room_membership"}], "join_rule": "restricted"}`,
			"m.room.power_levels":       powerLevelsV1,
			"m.room.aliases":            `{}`,
			"m.room.history_visibility": `{"history_visibility": "shared"}`,
			"m.room.redaction":          `{}`,
			"m.room.message":            `{}`,
		},
	},
	{
		algorithm: "v11",
		versions:  []event.RoomVersion{"11", "12"},
		top:       keptTopV11,
		content: map[string]string{
			"m.room.member": `{"join_authorised_via_users_server": "@bob:example.org", "membership": "join",
				"third_party_invite": {"signed": {"mxid": "@carol:example.org", "token": "t"}}}`,
			"m.room.create":             sinkContent,
			"m.room.join_rules":         `{"allow": [{"room_id": "!other:example.org", "type": "m.room_membership"}], "join_rule": "restricted"}`,
			"m.room.power_levels":       powerLevelsV11,
			"m.room.aliases":            `{}`,
			"m.room.history_visibility": `{"history_visibility": "shared"}`,
			"m.room.redaction":          `{"redacts": "$target:example.org"}`,
			"m.room.message":            `{}`,
		},
	},
}

func TestRedactPerVersionAndType(t *testing.T) {
	for _, rc := range redactionCases {
		for _, v := range rc.versions {
			info, err := v.Info()
			if err != nil {
				t.Fatal(err)
			}
			for evType, content := range rc.content {
				t.Run(fmt.Sprintf("%s/v%s/%s", rc.algorithm, v, evType), func(t *testing.T) {
					got, err := event.Redact([]byte(sinkEvent(evType)), info)
					if err != nil {
						t.Fatal(err)
					}
					want := mustCanonical(t, `{`+rc.top+`, "content": `+content+`, "type": "`+evType+`"}`)
					if !bytes.Equal(got, want) {
						t.Errorf("Redact =\n%s\nwant\n%s", got, want)
					}
					// Redaction is idempotent: a redacted event has nothing
					// left to strip.
					again, err := event.Redact(got, info)
					if err != nil || !bytes.Equal(again, got) {
						t.Errorf("redacting twice changed the event: %s (%v)", again, err)
					}
				})
			}
		}
	}
}

func TestRedactV11ThirdPartyInvite(t *testing.T) {
	info, _ := event.RoomVersion("11").Info()
	tests := []struct {
		name, invite, want string
	}{
		{"signed kept, rest dropped", `{"display_name": "c", "signed": {"token": "t", "nested": {"a": [1, 2]}}}`,
			`{"membership": "invite", "third_party_invite": {"signed": {"nested": {"a": [1, 2]}, "token": "t"}}}`},
		// "The third_party_invite key ... is no longer redacted, but will
		// only contain the signed key": an object without signed stays as {}.
		{"no signed", `{"display_name": "c"}`, `{"membership": "invite", "third_party_invite": {}}`},
		{"signed not an object", `{"signed": "x"}`, `{"membership": "invite", "third_party_invite": {"signed": "x"}}`},
		// A non-object has no signed key to keep.
		{"not an object", `"x"`, `{"membership": "invite"}`},
		{"array", `[{"signed": {}}]`, `{"membership": "invite"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := `{"type": "m.room.member", "state_key": "@carol:example.org", "sender": "@a:example.org",
				"room_id": "!r:example.org", "content": {"membership": "invite", "third_party_invite": ` + tt.invite + `}}`
			got, err := event.Redact([]byte(in), info)
			if err != nil {
				t.Fatal(err)
			}
			want := mustCanonical(t, `{"type": "m.room.member", "state_key": "@carol:example.org",
				"sender": "@a:example.org", "room_id": "!r:example.org", "content": `+tt.want+`}`)
			if !bytes.Equal(got, want) {
				t.Errorf("Redact =\n%s\nwant\n%s", got, want)
			}
		})
	}
	// Before room version 11 the whole key goes.
	info10, _ := event.RoomVersion("10").Info()
	got, err := event.Redact([]byte(`{"type":"m.room.member","content":{"membership":"invite","third_party_invite":{"signed":{}}}}`), info10)
	if err != nil || string(got) != `{"content":{"membership":"invite"},"type":"m.room.member"}` {
		t.Errorf("v10 Redact = %s, %v", got, err)
	}
}

func TestRedactKeepsValuesExactly(t *testing.T) {
	// Kept values are copied byte for byte from the canonical input: no
	// number is reformatted, no string re-escaped, nested keys stay sorted.
	info, _ := event.RoomVersion("1").Info()
	in := `{"type":"m.room.power_levels","content":{"users":{"@z:x":100,"@a:x":12345678901234567890},` +
		`"events":{"m.room.\u00e9":"50","m.room.\"q\"":1.5}},"unsigned":{"x":1}}`
	got, err := event.Redact([]byte(in), info)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"content":{"events":{"m.room.\"q\"":1.5,"m.room.é":"50"},"users":{"@a:x":12345678901234567890,"@z:x":100}},"type":"m.room.power_levels"}`
	if string(got) != want {
		t.Errorf("Redact =\n%s\nwant\n%s", got, want)
	}
}

func TestRedactKeysMatchExactly(t *testing.T) {
	// Keys differing only in case are different keys: "Type" is not
	// "type" and "Membership" is not "membership".
	info, _ := event.RoomVersion("10").Info()
	in := `{"Type":"m.room.create","type":"m.room.member","Content":{},"content":{"Membership":"join","membership":"leave"}}`
	got, err := event.Redact([]byte(in), info)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"content":{"membership":"leave"},"type":"m.room.member"}`; string(got) != want {
		t.Errorf("Redact = %s, want %s", got, want)
	}
}

func TestRedactErrors(t *testing.T) {
	info, _ := event.RoomVersion("10").Info()
	for _, in := range []string{
		`[]`,
		`"x"`,
		`{"content":{}}`,            // no type
		`{"type":1,"content":{}}`,   // type not a string
		`{"type":"m.room.message"}`, // no content
		`{"type":"m.room.message","content":[]}`,
		`{"type":"m.room.message","content":"x"}`,
		`{"type":"m.room.message","content":{}`, // not JSON
	} {
		if got, err := event.Redact([]byte(in), info); err == nil {
			t.Errorf("Redact(%s) = %s, want an error", in, got)
		}
	}
	_, err := event.Redact([]byte(`{"content":{}}`), info)
	if !errors.Is(err, event.ErrBadEvent) {
		t.Errorf("error %v does not wrap ErrBadEvent", err)
	}
}

func TestRedactedEvent(t *testing.T) {
	for _, v := range event.KnownRoomVersions() {
		t.Run("v"+string(v), func(t *testing.T) {
			ev := buildTestEvent(t, v, event.ProtoEvent{
				Type:     "m.room.member",
				StateKey: ptr("@alice:a.example"),
				Sender:   "@alice:a.example",
				Content:  []byte(`{"membership":"join","displayname":"Alice","avatar_url":"mxc://a/b"}`),
			})
			red, err := ev.Redacted()
			if err != nil {
				t.Fatal(err)
			}
			if red.EventID() != ev.EventID() {
				t.Errorf("ID changed: %s → %s", ev.EventID(), red.EventID())
			}
			if string(red.Content()) != `{"membership":"join"}` {
				t.Errorf("content %s", red.Content())
			}
			if red.ContentHashMatches() {
				t.Error("redacted event still matches its content hash")
			}
			if m, err := red.Membership(); err != nil || m != "join" {
				t.Errorf("Membership = %q, %v", m, err)
			}
			if strings.Contains(string(red.JSON()), "unsigned") {
				t.Error("redacted event keeps unsigned")
			}
			// Re-deriving the ID from the redacted JSON gives the same ID.
			again, err := event.NewEventFromTrustedJSON(red.JSON(), v)
			if err != nil {
				t.Fatal(err)
			}
			if again.EventID() != ev.EventID() {
				t.Errorf("ID from redacted JSON %s, want %s", again.EventID(), ev.EventID())
			}
		})
	}
}

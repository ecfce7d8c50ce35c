package authrules

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
	"unicode/utf8"

	"github.com/parley-chat/parley/matrix/event"
)

func TestObjectMember(t *testing.T) {
	cases := []struct {
		obj, key, want string
		ok             bool
	}{
		{`{"a":1,"b":"x"}`, "b", `"x"`, true},
		{`{"a":1,"b":"x"}`, "c", ``, false},
		{` { "a" : [1,{"b":2}] , "b" : {"c":"}"} } `, "b", `{"c":"}"}`, true},
		{`{"a":1,"a":2}`, "a", `2`, true},
		{`{"\u0061":true}`, "a", `true`, true},
		{`{"a\"b":null}`, `a"b`, `null`, true},
		{`{"s":"a\"}b","t":1}`, "t", `1`, true},
		{`[1]`, "a", ``, false},
		{`"a"`, "a", ``, false},
		{`{}`, "a", ``, false},
	}
	for _, c := range cases {
		got, ok := objectMember([]byte(c.obj), c.key)
		if ok != c.ok || string(got) != c.want {
			t.Errorf("objectMember(%s, %q) = %s, %v; want %s, %v", c.obj, c.key, got, ok, c.want, c.ok)
		}
	}
}

func TestJSONString(t *testing.T) {
	for raw, want := range map[string]string{`"abc"`: "abc", `"a\nb"`: "a\nb", `"\u00e9"`: "é", `""`: ""} {
		if got, ok := jsonString([]byte(raw)); !ok || got != want {
			t.Errorf("jsonString(%s) = %q, %v", raw, got, ok)
		}
	}
	for _, raw := range []string{`5`, `null`, `"`, ``, `{"a":1}`} {
		if _, ok := jsonString([]byte(raw)); ok {
			t.Errorf("jsonString(%s) accepted", raw)
		}
	}
}

// FuzzObjectMember checks the scanner against encoding/json decoding into a
// map, which is what it stands in for.
func FuzzObjectMember(f *testing.F) {
	f.Add([]byte(`{"a":1,"b":{"c":[1,2,"]"]},"a":"x"}`), "a")
	f.Add([]byte(`{"users":{"@a:b":50}}`), "users")
	f.Add([]byte(`{"\u0075":1}`), "u")
	f.Fuzz(func(t *testing.T, data []byte, key string) {
		if !json.Valid(data) || !utf8.Valid(data) {
			return
		}
		var m map[string]json.RawMessage
		isObj := json.Unmarshal(data, &m) == nil && m != nil
		if isObject(data) != isObj {
			t.Fatalf("isObject(%s) = %v", data, !isObj)
		}
		got, ok := objectMember(data, key)
		want, wantOK := m[key]
		if ok != wantOK || !bytes.Equal(got, want) {
			t.Fatalf("objectMember(%s, %q) = %s, %v; encoding/json: %s, %v", data, key, got, ok, want, wantOK)
		}
	})
}

// FuzzPowerLevels checks that scanning power levels per question, as
// Allowed does, answers like parsing them once, as NewPowerLevels does, and
// that nothing panics on odd content.
func FuzzPowerLevels(f *testing.F) {
	f.Add([]byte(`{"ban":"50","users":{"@a:x.test":" 7 ","bad":1},"events":{"m.x":1.5},"users_default":true}`), uint8(3))
	f.Add([]byte(`{"users":{"@a:x.test":1,"@a:x.test":"x"},"events":[],"notifications":{"room":9007199254740993}}`), uint8(10))
	f.Add([]byte(`{"kick":1e400,"invite":-0,"redact":"-0012"}`), uint8(1))
	f.Fuzz(func(t *testing.T, content []byte, verIndex uint8) {
		vers := event.KnownRoomVersions()
		ver := vers[int(verIndex)%len(vers)]
		if !json.Valid(content) || !isObject(content) {
			return
		}
		r := newEmptyRoom(t, ver)
		r.addCreate(alice, r.createContent())
		id, b := r.eventJSON(spec{Type: typePowerLevels, StateKey: sk(""), Sender: alice, Content: json.RawMessage(content)})
		pl, err := event.NewEventFromTrustedJSONWithEventID(id, b, ver)
		if err != nil {
			return // not an event the event package accepts
		}
		// The event package canonicalises content; compare on what it kept.
		eager, err := NewPowerLevels(r.create, pl)
		if err != nil {
			t.Fatal(err)
		}
		cc, _ := parseCreate(r.create)
		lazy := newPowerLevels(cc, pl)
		var keys []string
		forEachMember(pl.Content(), func(k []byte, _ bool, v []byte) bool {
			keys = append(keys, string(k))
			forEachMember(v, func(k2 []byte, _ bool, _ []byte) bool {
				keys = append(keys, string(k2))
				return true
			})
			return true
		})
		keys = append(keys, alice, "@a:x.test", "room", "m.x")
		for _, k := range keys {
			if a, b := eager.UserLevel(k), lazy.UserLevel(k); a != b {
				t.Fatalf("UserLevel(%q): parsed %d, scanned %d", k, a, b)
			}
			for _, state := range []bool{false, true} {
				if a, b := eager.EventLevel(k, state), lazy.EventLevel(k, state); a != b {
					t.Fatalf("EventLevel(%q): parsed %d, scanned %d", k, a, b)
				}
			}
			a, aok := eager.NotificationLevel(k)
			b, bok := lazy.NotificationLevel(k)
			if a != b || aok != bok {
				t.Fatalf("NotificationLevel(%q): parsed %d %v, scanned %d %v", k, a, aok, b, bok)
			}
		}
		for i := range namedLevelKeys {
			if a, b := eager.named(i), lazy.named(i); a != b {
				t.Fatalf("%s: parsed %d, scanned %d", namedLevelKeys[i], a, b)
			}
		}
		_ = ValidatePowerLevelsContent(content, r.info)
	})
}

// FuzzAllowed feeds arbitrary content to the auth rules of the event types
// they read content from, in a standard room: nothing may panic, and a
// refusal must wrap ErrNotAllowed.
func FuzzAllowed(f *testing.F) {
	f.Add(uint8(0), []byte(`{"membership":"join","join_authorised_via_users_server":"@bob:a.test"}`), uint8(11))
	f.Add(uint8(0), []byte(`{"membership":"invite","third_party_invite":{"signed":{"mxid":"@dave:a.test","token":"tok","signatures":{"x":{"ed25519:0":"AAAA"}}}}}`), uint8(5))
	f.Add(uint8(1), []byte(`{"users":{"@bob:a.test":"40"},"ban":1.5}`), uint8(2))
	f.Add(uint8(2), []byte(`{"room_version":"12","additional_creators":["@x:y"]}`), uint8(11))
	types := []string{typeMember, typePowerLevels, typeCreate, typeThirdPartyInvite, typeRedaction, typeAliases}
	f.Fuzz(func(t *testing.T, typeIndex uint8, content []byte, verIndex uint8) {
		if !json.Valid(content) || !isObject(content) {
			return
		}
		vers := event.KnownRoomVersions()
		ver := vers[int(verIndex)%len(vers)]
		r := newRoom(t, ver, withJoinRule(joinRuleRestricted))
		r.add(spec{Type: typeThirdPartyInvite, StateKey: sk("tok"), Sender: bob, Content: tpiContentWithList()})
		typ := types[int(typeIndex)%len(types)]
		s := spec{Type: typ, StateKey: sk(dave), Sender: bob, Content: json.RawMessage(content)}
		switch typ {
		case typePowerLevels, typeCreate:
			s.StateKey = sk("")
		case typeRedaction:
			s.StateKey = nil
		}
		id, b := r.eventJSON(s)
		ev, err := event.NewEventFromTrustedJSONWithEventID(id, b, ver)
		if err != nil {
			return
		}
		if err := Allowed(ev, r.state); err != nil && !errors.Is(err, ErrNotAllowed) {
			t.Fatalf("refusal does not wrap ErrNotAllowed: %v", err)
		}
		_ = AuthEventsNeededFor(ev)
	})
}

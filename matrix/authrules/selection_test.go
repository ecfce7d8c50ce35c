package authrules

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"

	"github.com/parley-chat/parley/matrix/event"
)

func TestAuthEventsNeeded(t *testing.T) {
	create := StateKeyTuple{typeCreate, ""}
	power := StateKeyTuple{typePowerLevels, ""}
	joinRules := StateKeyTuple{typeJoinRules, ""}
	member := func(u string) StateKeyTuple { return StateKeyTuple{typeMember, u} }
	withCreate := func(v event.RoomVersionInfo, rest ...StateKeyTuple) []StateKeyTuple {
		if v.CreateEventIsRoomID {
			return rest
		}
		return append([]StateKeyTuple{create}, rest...)
	}
	signed := `{"membership":"invite","third_party_invite":{"display_name":"d","signed":{"mxid":"@dave:a.test","token":"tok","signatures":{}}}}`

	cases := []struct {
		name     string
		typ      string
		stateKey *string
		sender   string
		content  string
		want     func(v event.RoomVersionInfo) []StateKeyTuple
	}{
		{"create event needs nothing", typeCreate, sk(""), alice, `{}`,
			func(event.RoomVersionInfo) []StateKeyTuple { return nil }},
		{"message", "m.room.message", nil, carol, `{"body":"x"}`,
			func(v event.RoomVersionInfo) []StateKeyTuple { return withCreate(v, power, member(carol)) }},
		{"state event", "m.room.name", sk(""), carol, `{}`,
			func(v event.RoomVersionInfo) []StateKeyTuple { return withCreate(v, power, member(carol)) }},
		{"aliases follow the general selection", typeAliases, sk("b.test"), eve, `{}`,
			func(v event.RoomVersionInfo) []StateKeyTuple { return withCreate(v, power, member(eve)) }},
		{"own join", typeMember, sk(dave), dave, `{"membership":"join"}`,
			func(v event.RoomVersionInfo) []StateKeyTuple { return withCreate(v, power, member(dave), joinRules) }},
		{"join authorised via a member", typeMember, sk(dave), dave, `{"membership":"join","join_authorised_via_users_server":"@bob:a.test"}`,
			func(v event.RoomVersionInfo) []StateKeyTuple {
				if v.RestrictedJoins {
					return withCreate(v, power, member(dave), joinRules, member(bob))
				}
				return withCreate(v, power, member(dave), joinRules)
			}},
		{"authorising user only selected for joins", typeMember, sk(dave), dave, `{"membership":"leave","join_authorised_via_users_server":"@bob:a.test"}`,
			func(v event.RoomVersionInfo) []StateKeyTuple { return withCreate(v, power, member(dave)) }},
		{"invite", typeMember, sk(dave), bob, `{"membership":"invite"}`,
			func(v event.RoomVersionInfo) []StateKeyTuple {
				return withCreate(v, power, member(bob), member(dave), joinRules)
			}},
		{"third-party invite", typeMember, sk(dave), bob, signed,
			func(v event.RoomVersionInfo) []StateKeyTuple {
				return withCreate(v, power, member(bob), member(dave), joinRules, StateKeyTuple{typeThirdPartyInvite, "tok"})
			}},
		{"third-party invite without a token", typeMember, sk(dave), bob, `{"membership":"invite","third_party_invite":{"signed":{}}}`,
			func(v event.RoomVersionInfo) []StateKeyTuple {
				return withCreate(v, power, member(bob), member(dave), joinRules)
			}},
		{"knock", typeMember, sk(dave), dave, `{"membership":"knock"}`,
			func(v event.RoomVersionInfo) []StateKeyTuple { return withCreate(v, power, member(dave), joinRules) }},
		{"kick", typeMember, sk(carol), bob, `{"membership":"leave"}`,
			func(v event.RoomVersionInfo) []StateKeyTuple { return withCreate(v, power, member(bob), member(carol)) }},
		{"ban", typeMember, sk(carol), bob, `{"membership":"ban"}`,
			func(v event.RoomVersionInfo) []StateKeyTuple { return withCreate(v, power, member(bob), member(carol)) }},
		{"member event with unparseable content", typeMember, sk(carol), bob, `[]`,
			func(v event.RoomVersionInfo) []StateKeyTuple { return withCreate(v, power, member(bob), member(carol)) }},
	}
	for _, c := range cases {
		for _, ver := range allVersions() {
			v, _ := ver.Info()
			t.Run(c.name+"/v"+string(ver), func(t *testing.T) {
				got := AuthEventsNeeded(v, c.typ, c.stateKey, c.sender, json.RawMessage(c.content))
				if want := c.want(v); !reflect.DeepEqual(got, want) {
					t.Errorf("got %v, want %v", got, want)
				}
			})
		}
	}
}

func TestCheckAuthEvents(t *testing.T) {
	type setup struct {
		r    *room
		auth []*event.Event
	}
	// A standard room, and carol's message listing the auth events its
	// selection asks for.
	build := func(t *testing.T, v event.RoomVersion) setup {
		r := newRoom(t, v)
		var auth []*event.Event
		for _, k := range AuthEventsNeeded(r.info, "m.room.message", nil, carol, nil) {
			auth = append(auth, r.state.Get(k.EventType, k.StateKey))
		}
		return setup{r: r, auth: auth}
	}
	ids := func(evs []*event.Event) []string {
		out := []string{}
		for _, e := range evs {
			out = append(out, e.EventID())
		}
		return out
	}
	messageWith := func(s setup, auth []*event.Event) *event.Event {
		return s.r.build(spec{Type: "m.room.message", Sender: carol, Auth: ids(auth)})
	}

	cases := []struct {
		name     string
		versions func(event.RoomVersionInfo) bool
		check    func(t *testing.T, s setup) error
		want     verdict
	}{
		{name: "the selection", check: func(t *testing.T, s setup) error {
			return CheckAuthEvents(messageWith(s, s.auth), s.auth)
		}, want: allow},
		{name: "create event is not checked", check: func(t *testing.T, s setup) error {
			return CheckAuthEvents(s.r.create, nil)
		}, want: allow},
		{name: "two events for one key", check: func(t *testing.T, s setup) error {
			old := s.r.build(spec{Type: typeMember, StateKey: sk(carol), Sender: carol, Content: map[string]any{"membership": "invite"}})
			auth := append(s.auth, old)
			return CheckAuthEvents(messageWith(s, auth), auth)
		}, want: reject},
		{name: "one event listed twice", check: func(t *testing.T, s setup) error {
			ev := s.r.build(spec{Type: "m.room.message", Sender: carol, Auth: append(ids(s.auth), s.auth[0].EventID())})
			return CheckAuthEvents(ev, append(s.auth, s.auth[0]))
		}, want: reject},
		{name: "an event outside the selection", check: func(t *testing.T, s setup) error {
			auth := append(s.auth, s.r.state.Get(typeJoinRules, ""))
			return CheckAuthEvents(messageWith(s, auth), auth)
		}, want: reject},
		{name: "another member's event", check: func(t *testing.T, s setup) error {
			auth := append(s.auth, s.r.state.Get(typeMember, bob))
			return CheckAuthEvents(messageWith(s, auth), auth)
		}, want: reject},
		{name: "no create event", versions: not(privilegedCreators), check: func(t *testing.T, s setup) error {
			auth := s.auth[1:]
			return CheckAuthEvents(messageWith(s, auth), auth)
		}, want: reject},
		{name: "create event listed", versions: privilegedCreators, check: func(t *testing.T, s setup) error {
			auth := append(s.auth, s.r.create)
			return CheckAuthEvents(messageWith(s, auth), auth)
		}, want: reject},
		{name: "event from another room", check: func(t *testing.T, s setup) error {
			foreign := s.r.build(spec{Type: typeMember, StateKey: sk(carol), Sender: carol, Content: map[string]any{"membership": "join"}, RoomID: "!elsewhere:a.test"})
			auth := append(s.auth[:len(s.auth)-1:len(s.auth)-1], foreign)
			return CheckAuthEvents(messageWith(s, auth), auth)
		}, want: reject},
		{name: "a message event", check: func(t *testing.T, s setup) error {
			msg := s.r.build(spec{Type: "m.room.message", Sender: carol})
			auth := append(s.auth, msg)
			return CheckAuthEvents(messageWith(s, auth), auth)
		}, want: reject},
	}
	for _, c := range cases {
		for _, ver := range allVersions() {
			v, _ := ver.Info()
			if c.versions != nil && !c.versions(v) {
				continue
			}
			t.Run(c.name+"/v"+string(ver), func(t *testing.T) {
				err := c.check(t, build(t, ver))
				if err != nil && !errors.Is(err, ErrNotAllowed) {
					t.Fatalf("unexpected error: %v", err)
				}
				if (err == nil) != c.want(v) {
					t.Errorf("got %s, want allowed=%v", describe(err), c.want(v))
				}
			})
		}
	}
}

func TestCheckAuthEventsCallerMistakes(t *testing.T) {
	r := newRoom(t, "10")
	auth := []*event.Event{r.create, r.state.Get(typePowerLevels, ""), r.state.Get(typeMember, carol)}
	ev := r.build(spec{Type: "m.room.message", Sender: carol, Auth: []string{auth[0].EventID(), auth[1].EventID(), auth[2].EventID()}})
	if err := CheckAuthEvents(ev, auth[:2]); err == nil || errors.Is(err, ErrNotAllowed) {
		t.Errorf("missing auth event: got %v, want an error that is not a refusal", err)
	}
	other := []*event.Event{auth[0], auth[1], r.state.Get(typeMember, bob)}
	if err := CheckAuthEvents(ev, other); err == nil || errors.Is(err, ErrNotAllowed) {
		t.Errorf("unlisted auth event: got %v, want an error that is not a refusal", err)
	}
}

// TestAllowedAgainstAuthEvents runs the documented sequence for checking an
// event against its own auth events, including v12 where the create event
// comes from the room ID rather than auth_events.
func TestAllowedAgainstAuthEvents(t *testing.T) {
	for _, ver := range allVersions() {
		t.Run("v"+string(ver), func(t *testing.T) {
			r := newRoom(t, ver)
			needed := AuthEventsNeeded(r.info, "m.room.message", nil, carol, nil)
			var auth []*event.Event
			var authIDs []string
			for _, k := range needed {
				e := r.state.Get(k.EventType, k.StateKey)
				auth = append(auth, e)
				authIDs = append(authIDs, e.EventID())
			}
			ev := r.build(spec{Type: "m.room.message", Sender: carol, Auth: authIDs})
			if err := CheckAuthEvents(ev, auth); err != nil {
				t.Fatal(err)
			}
			state := NewStateMap(auth...)
			if r.info.CreateEventIsRoomID {
				if err := Allowed(ev, state); err == nil {
					t.Error("v12 event allowed without the create event")
				}
				state = NewStateMap(append(auth, r.create)...)
			}
			if err := Allowed(ev, state); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestNewStateMap(t *testing.T) {
	r := newRoom(t, "11")
	msg := r.build(spec{Type: "m.room.message", Sender: carol})
	first := r.state.Get(typeMember, carol)
	second := r.build(spec{Type: typeMember, StateKey: sk(carol), Sender: carol, Content: map[string]any{"membership": "leave"}})
	m := NewStateMap(msg, first, second, nil)
	if len(m) != 1 || m.Get(typeMember, carol) != second {
		t.Errorf("got %v, want only carol's latest membership", m)
	}
	if m.Get(typeMember, bob) != nil {
		t.Error("absent key returned an event")
	}
}

func TestAuthorisingServer(t *testing.T) {
	cases := []struct {
		name    string
		content map[string]any
		typ     string
		want    verdict // whether a signature is required
		server  string
	}{
		{"join authorised via a user", map[string]any{"membership": "join", "join_authorised_via_users_server": "@bob:b.test"}, typeMember, restrictedJoins, "b.test"},
		{"any membership carrying the key", map[string]any{"membership": "leave", "join_authorised_via_users_server": "@bob:b.test:8448"}, typeMember, restrictedJoins, "b.test:8448"},
		{"no key", map[string]any{"membership": "join"}, typeMember, reject, ""},
		{"not a user ID", map[string]any{"membership": "join", "join_authorised_via_users_server": "bob"}, typeMember, reject, ""},
		{"not a member event", map[string]any{"join_authorised_via_users_server": "@bob:b.test"}, "m.room.message", reject, ""},
	}
	for _, c := range cases {
		for _, ver := range allVersions() {
			t.Run(c.name+"/v"+string(ver), func(t *testing.T) {
				r := newRoom(t, ver)
				s := spec{Type: c.typ, Sender: dave, Content: c.content}
				if c.typ == typeMember {
					s.StateKey = sk(dave)
				}
				server, ok := AuthorisingServer(r.build(s))
				want := c.want(r.info)
				if ok != want || (want && server != c.server) {
					t.Errorf("got (%q, %v), want (%q, %v)", server, ok, c.server, want)
				}
			})
		}
	}
}

package authrules

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/parley-chat/parley/matrix/event"
)

// Users of the test rooms. alice creates every room; in the standard room
// bob is a moderator (50), carol an ordinary member, dave and frank are
// outsiders, eve is a member on another server.
const (
	alice = "@alice:a.test"
	bob   = "@bob:a.test"
	carol = "@carol:a.test"
	dave  = "@dave:a.test"
	frank = "@frank:a.test"
	eve   = "@eve:b.test"
)

func sk(s string) *string { return &s }

// spec describes an event to build; zero fields get sensible defaults.
type spec struct {
	ID       string // default: a fresh ID in the version's format
	Type     string
	StateKey *string
	Sender   string
	Content  any      // default {}
	Prev     []string // default: the room's last event
	NoPrev   bool     // no prev_events at all
	Auth     []string // auth_events
	Redacts  string
	RoomID   string // default: the room's
	NoRoomID bool
	Extra    map[string]any // extra top-level keys
}

// room builds the events of one test room by hand and tracks its state.
type room struct {
	t      testing.TB
	ver    event.RoomVersion
	info   event.RoomVersionInfo
	roomID string
	create *event.Event
	state  StateMap
	last   string
	n      int
	seed   string // distinguishes the event IDs of different rooms
}

func newEmptyRoom(t testing.TB, ver event.RoomVersion) *room {
	t.Helper()
	info, err := ver.Info()
	if err != nil {
		t.Fatal(err)
	}
	return &room{t: t, ver: ver, info: info, state: StateMap{}, seed: "room"}
}

// eventID makes an ID in the version's format. In versions 1-2 the ID
// carries the sender's server, which the v1-2 redaction rule reads.
func (r *room) eventID(sender string) string {
	r.n++
	if r.info.EventIDFormat == event.EventIDFormatV1 {
		d, _ := domainOf(sender)
		if d == "" {
			d = "a.test"
		}
		return fmt.Sprintf("$%s%d:%s", r.seed, r.n, d)
	}
	return hashID(r.seed + strconv.Itoa(r.n))
}

// hashID is a 43-character URL-safe base64 ID like those of v4+ events.
func hashID(s string) string {
	sum := sha256.Sum256([]byte(s))
	return "$" + base64.RawURLEncoding.EncodeToString(sum[:])
}

// eventJSON renders s as PDU JSON for the room's version.
func (r *room) eventJSON(s spec) (string, []byte) {
	r.t.Helper()
	if s.Sender == "" {
		s.Sender = alice
	}
	id := s.ID
	if id == "" {
		id = r.eventID(s.Sender)
	}
	content := s.Content
	if m, ok := content.(map[string]any); content == nil || (ok && m == nil) {
		content = map[string]any{}
	}
	m := map[string]any{
		"type":             s.Type,
		"sender":           s.Sender,
		"content":          content,
		"origin_server_ts": 1700000000000 + r.n,
		"depth":            r.n,
		"hashes":           map[string]any{"sha256": "aGFzaA"},
		"signatures":       map[string]any{},
	}
	if s.StateKey != nil {
		m["state_key"] = *s.StateKey
	}
	if !s.NoRoomID {
		roomID := s.RoomID
		if roomID == "" {
			roomID = r.roomID
		}
		m["room_id"] = roomID
	}
	prev := s.Prev
	if prev == nil && !s.NoPrev && r.last != "" {
		prev = []string{r.last}
	}
	m["prev_events"] = r.refs(prev)
	m["auth_events"] = r.refs(s.Auth)
	if s.Redacts != "" {
		if r.info.RedactsInContent {
			if cm, ok := content.(map[string]any); ok {
				cm["redacts"] = s.Redacts
			}
		} else {
			m["redacts"] = s.Redacts
		}
	}
	if r.info.EventIDFormat == event.EventIDFormatV1 {
		m["event_id"] = id
		m["origin"] = "a.test"
	}
	for k, v := range s.Extra {
		m[k] = v
	}
	b, err := json.Marshal(m)
	if err != nil {
		r.t.Fatal(err)
	}
	return id, b
}

// refs renders prev_events or auth_events: pairs in v1-2, IDs after.
func (r *room) refs(ids []string) any {
	if r.info.EventIDFormat != event.EventIDFormatV1 {
		if ids == nil {
			return []string{}
		}
		return ids
	}
	out := []any{}
	for _, id := range ids {
		out = append(out, []any{id, map[string]any{"sha256": "aGFzaA"}})
	}
	return out
}

// build makes the event without adding it to the room.
func (r *room) build(s spec) *event.Event {
	r.t.Helper()
	id, b := r.eventJSON(s)
	ev, err := event.NewEventFromTrustedJSONWithEventID(id, b, r.ver)
	if err != nil {
		r.t.Fatalf("building %s: %v", b, err)
	}
	return ev
}

// add builds the event and makes it the room's latest state, without
// checking it: rooms are set up by hand, whatever the rules say.
func (r *room) add(s spec) *event.Event {
	r.t.Helper()
	ev := r.build(s)
	r.last = ev.EventID()
	if ev.StateKey() != nil {
		r.state[StateKeyTuple{ev.Type(), *ev.StateKey()}] = ev
	}
	return ev
}

// createContent is the content of alice's create event in this version.
func (r *room) createContent() map[string]any {
	c := map[string]any{"room_version": string(r.ver)}
	if !r.info.CreatorFromSender {
		c["creator"] = alice
	}
	return c
}

// addCreate adds a create event by sender with content and sets the room ID.
func (r *room) addCreate(sender string, content map[string]any) *event.Event {
	r.t.Helper()
	s := spec{Type: typeCreate, StateKey: sk(""), Sender: sender, Content: content, NoPrev: true}
	if r.info.CreateEventIsRoomID {
		s.NoRoomID = true
		s.ID = hashID(r.seed + "create")
		r.roomID = "!" + s.ID[1:]
	} else {
		d, _ := domainOf(sender)
		r.roomID = "!" + r.seed + ":" + d
	}
	r.create = r.add(s)
	return r.create
}

func (r *room) member(sender, target, membership string, extra map[string]any) *event.Event {
	r.t.Helper()
	return r.add(r.memberSpec(sender, target, membership, extra))
}

func (r *room) memberSpec(sender, target, membership string, extra map[string]any) spec {
	c := map[string]any{"membership": membership}
	for k, v := range extra {
		c[k] = v
	}
	return spec{Type: typeMember, StateKey: sk(target), Sender: sender, Content: c}
}

func (r *room) joinRules(rule string) *event.Event {
	r.t.Helper()
	return r.add(spec{Type: typeJoinRules, StateKey: sk(""), Sender: alice, Content: map[string]any{"join_rule": rule}})
}

// powerLevels adds power levels by alice. users may name alice; in versions
// with privileged creators she is left out, as the rules demand.
func (r *room) powerLevels(content map[string]any) *event.Event {
	r.t.Helper()
	if users, ok := content["users"].(map[string]any); ok && r.info.PrivilegedCreators {
		delete(users, alice)
	}
	return r.add(spec{Type: typePowerLevels, StateKey: sk(""), Sender: alice, Content: content})
}

// standardPowerLevels are the levels of the standard room: alice 100 (or
// creator), bob 50, everything else default.
func standardPowerLevels() map[string]any {
	return map[string]any{"users": map[string]any{alice: 100, bob: 50}}
}

// newRoom builds the standard room: created by alice, who joined; power
// levels; join rule; bob and carol joined. Options adjust it.
func newRoom(t testing.TB, ver event.RoomVersion, opts ...func(*roomOpts)) *room {
	t.Helper()
	o := roomOpts{joinRule: joinRuleInvite, pl: standardPowerLevels()}
	for _, f := range opts {
		f(&o)
	}
	r := newEmptyRoom(t, ver)
	cc := r.createContent()
	for k, v := range o.createExtra {
		cc[k] = v
	}
	r.addCreate(alice, cc)
	r.member(alice, alice, membershipJoin, nil)
	if o.pl != nil {
		r.powerLevels(o.pl)
	}
	if o.joinRule != "" {
		r.joinRules(o.joinRule)
	}
	r.member(bob, bob, membershipJoin, nil)
	r.member(carol, carol, membershipJoin, nil)
	return r
}

type roomOpts struct {
	joinRule    string
	pl          map[string]any // nil: no power levels event
	createExtra map[string]any
}

func withJoinRule(rule string) func(*roomOpts) { return func(o *roomOpts) { o.joinRule = rule } }

func withPowerLevels(pl map[string]any) func(*roomOpts) { return func(o *roomOpts) { o.pl = pl } }

func withCreate(extra map[string]any) func(*roomOpts) {
	return func(o *roomOpts) { o.createExtra = extra }
}

// versionsWhere lists the room versions whose flags satisfy f.
func versionsWhere(f func(event.RoomVersionInfo) bool) []event.RoomVersion {
	var out []event.RoomVersion
	for _, v := range event.KnownRoomVersions() {
		info, _ := v.Info()
		if f(info) {
			out = append(out, v)
		}
	}
	return out
}

func allVersions() []event.RoomVersion { return event.KnownRoomVersions() }

// describe shortens an error for test names and failures.
func describe(err error) string {
	if err == nil {
		return "allowed"
	}
	return strings.TrimPrefix(err.Error(), ErrNotAllowed.Error()+": ")
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

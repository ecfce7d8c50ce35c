package push

import (
	"encoding/json"
	"testing"

	"github.com/parley-chat/parley/matrix/event"
)

// matchesCond reports whether a lone override rule with the conditions
// matches ev for user in room.
func matchesCond(t *testing.T, ev *event.Event, room *RoomContext, user string, conds ...Condition) bool {
	t.Helper()
	rs := &Ruleset{Override: []*Rule{{RuleID: "test", Enabled: true, Conditions: conds, Actions: []json.RawMessage{raw(`"notify"`)}}}}
	rs.normalise()
	return evalRules(ev, room, user, rs) != nil
}

func TestGlobWholeValue(t *testing.T) {
	// The spec's event_match example: key content.topic, pattern lunc?*.
	g := compileGlob("lunc?*")
	for s, want := range map[string]bool{
		"Lunch plans": true, "LUNCH": true, // case-insensitive; * may match nothing
		" lunch": false, // leading space
		"lunc":   false, // ? must match a character
	} {
		if got := g.matchWhole(s); got != want {
			t.Errorf("lunc?* against %q: %v, want %v", s, got, want)
		}
	}
	for _, c := range []struct {
		pattern, value string
		want           bool
	}{
		{"m.room.message", "m.room.message", true},
		{"m.room.message", "M.Room.Message", true},
		{"m.room.message", "m.room.messages", false},
		{"m.room.*", "m.room.message", true},
		{"m.room.*", "m.roomy", false},
		{"*", "", true},
		{"?", "é", true}, // one character, two bytes
		{"?", "", false},
		{"", "", true},
		{"", "x", false},
		{"a.c", "abc", false}, // dots are literal
		{"a*c", "a\nc", true}, // wildcards cross lines
		{"[ab]", "a", false},  // no character classes in Matrix globs
		{"[ab]", "[AB]", true},
	} {
		if got := compileGlob(c.pattern).matchWhole(c.value); got != c.want {
			t.Errorf("%q against %q: %v, want %v", c.pattern, c.value, got, c.want)
		}
	}
}

func TestGlobBodyWords(t *testing.T) {
	// The spec's content.body example: pattern ex*ple.
	g := compileGlob("ex*ple")
	for s, want := range map[string]bool{
		"An example event.":         true,
		"exple":                     true, // at the start and end of the body
		"An exciting triple-whammy": true, // across words; - is a separator
		"examples":                  false,
		"an_example":                false, // _ is a word character
	} {
		if got := g.matchWords(s, lower(s)); got != want {
			t.Errorf("ex*ple in %q: %v, want %v", s, got, want)
		}
	}
	cake := compileGlob("cake")
	for s, want := range map[string]bool{
		"cake":                 true,
		"I like CAKE!":         true,
		"cakes":                false,
		"pancake":              false,
		"cake-shop":            true,
		"x cake":               true,
		"café cake":            true,
		"pan cake9":            false,
		"naïcake":              true, // non-ASCII letters are boundaries
		"is it cake or cakes?": true,
	} {
		if got := cake.matchWords(s, lower(s)); got != want {
			t.Errorf("cake in %q: %v, want %v", s, got, want)
		}
	}
}

func lower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 32
		}
	}
	return string(b)
}

func TestEventMatch(t *testing.T) {
	topic := mkEvent(t, map[string]any{"type": "m.room.topic", "state_key": "", "content": map[string]any{"topic": "Lunch plans"}})
	cond := Condition{Kind: CondEventMatch, Key: "content.topic", Pattern: strp("lunc?*")}
	if !matchesCond(t, topic, nil, "@u:x", cond) {
		t.Error("lunc?* should match the topic")
	}
	for _, v := range []any{" lunch", "lunc", nil, 42} {
		ev := mkEvent(t, map[string]any{"type": "m.room.topic", "state_key": "", "content": map[string]any{"topic": v}})
		if matchesCond(t, ev, nil, "@u:x", cond) {
			t.Errorf("lunc?* should not match topic %v", v)
		}
	}
	// Absent properties and non-strings never match, not even *.
	star := Condition{Kind: CondEventMatch, Key: "content.missing", Pattern: strp("*")}
	if matchesCond(t, topic, nil, "@u:x", star) {
		t.Error("* matched an absent property")
	}
	// Top-level keys and escaped dots.
	if !matchesCond(t, topic, nil, "@u:x", Condition{Kind: CondEventMatch, Key: "state_key", Pattern: strp("")}) {
		t.Error("state_key \"\" should match the empty pattern")
	}
	dotted := message(t, "@a:x", map[string]any{"m.relates_to": map[string]any{"rel_type": "m.thread"}})
	if !matchesCond(t, dotted, nil, "@u:x", Condition{Kind: CondEventMatch, Key: `content.m\.relates_to.rel_type`, Pattern: strp("m.thread")}) {
		t.Error("escaped dot path did not match")
	}
	if matchesCond(t, dotted, nil, "@u:x", Condition{Kind: CondEventMatch, Key: `content.m.relates_to.rel_type`, Pattern: strp("m.thread")}) {
		t.Error("unescaped dots must descend into objects named m and relates_to")
	}
	// origin_server_ts is a number: event_match ignores it; other
	// top-level strings are reachable.
	if !matchesCond(t, dotted, nil, "@u:x", Condition{Kind: CondEventMatch, Key: "room_id", Pattern: strp("!room:*")}) {
		t.Error("room_id should match")
	}
}

func TestEventPropertyIs(t *testing.T) {
	create := mkEvent(t, map[string]any{"type": "m.room.create", "state_key": "", "content": map[string]any{
		"creator": "@example:example.org", "m.federate": true, "room_version": "1",
		"predecessor": map[string]any{"event_id": "$something:example.org", "room_id": "!oldroom:example.org"},
	}})
	is := func(key, value string) Condition {
		return Condition{Kind: CondEventPropertyIs, Key: key, Value: raw(value)}
	}
	for _, c := range []struct {
		cond Condition
		want bool
	}{
		{is(`content.m\.federate`, `true`), true},
		{is(`content.m\.federate`, `"true"`), false}, // no casting
		{is(`content.m\.federate`, `1`), false},
		{is(`content.room_version`, `"1"`), true},
		{is(`content.room_version`, `1`), false},
		{is(`content.predecessor.room_id`, `"!oldroom:example.org"`), true},
		{is(`content.predecessor`, `null`), false}, // compound values never match
		{is(`content.absent`, `null`), false},
	} {
		if got := matchesCond(t, create, nil, "@u:x", c.cond); got != c.want {
			t.Errorf("%s = %s: %v, want %v", c.cond.Key, c.cond.Value, got, c.want)
		}
	}
	ev := message(t, "@a:x", map[string]any{"n": 42, "z": nil, "f": 1.5, "big": 9007199254740993})
	for _, c := range []struct {
		cond Condition
		want bool
	}{
		{is("content.n", "42"), true},
		{is("content.n", "43"), false},
		{is("content.z", "null"), true},
		{is("content.f", "1"), false},
	} {
		if got := matchesCond(t, ev, nil, "@u:x", c.cond); got != c.want {
			t.Errorf("%s = %s: %v, want %v", c.cond.Key, c.cond.Value, got, c.want)
		}
	}
}

func TestEventPropertyContains(t *testing.T) {
	ev := mkEvent(t, map[string]any{"type": "m.room.canonical_alias", "state_key": "", "content": map[string]any{
		"alias": "#somewhere:localhost", "alt_aliases": []any{"#somewhere:example.org", "#myroom:example.com", 7, true, nil, []any{"x"}},
	}})
	contains := func(key, value string) Condition {
		return Condition{Kind: CondEventPropertyContains, Key: key, Value: raw(value)}
	}
	for _, c := range []struct {
		cond Condition
		want bool
	}{
		{contains("content.alt_aliases", `"#myroom:example.com"`), true},
		{contains("content.alt_aliases", `":example.com"`), false}, // partial values do not match
		{contains("content.alt_aliases", `7`), true},
		{contains("content.alt_aliases", `true`), true},
		{contains("content.alt_aliases", `null`), true},
		{contains("content.alt_aliases", `"7"`), false},
		{contains("content.alias", `"#somewhere:localhost"`), false}, // not an array
		{contains("content.absent", `"x"`), false},
	} {
		if got := matchesCond(t, ev, nil, "@u:x", c.cond); got != c.want {
			t.Errorf("%s contains %s: %v, want %v", c.cond.Key, c.cond.Value, got, c.want)
		}
	}
}

func TestContainsDisplayName(t *testing.T) {
	room := &RoomContext{MemberCount: 3, DisplayNames: map[string]string{"@bob:x": "Bob Smith", "@carol:x": ""}}
	cond := Condition{Kind: CondContainsDisplayName}
	for body, want := range map[string]bool{
		"hey bob smith, lunch?": true,
		"BOB SMITH":             true,
		"bob smiths":            false,
		"bob":                   false,
		"xbob smith":            false,
	} {
		ev := message(t, "@alice:x", map[string]any{"body": body})
		if got := matchesCond(t, ev, room, "@bob:x", cond); got != want {
			t.Errorf("display name in %q: %v, want %v", body, got, want)
		}
	}
	ev := message(t, "@alice:x", map[string]any{"body": "anything"})
	if matchesCond(t, ev, room, "@carol:x", cond) {
		t.Error("an empty display name must not match")
	}
	if matchesCond(t, ev, room, "@dave:x", cond) {
		t.Error("a user without a display name must not match")
	}
	// Two users with different names, evaluated on the same prepared
	// event: the outcome is per user, never shared.
	e := NewEvaluator()
	rs := &Ruleset{Override: []*Rule{{RuleID: "dn", Enabled: true, Conditions: []Condition{cond}, Actions: []json.RawMessage{raw(`"notify"`)}}}}
	rs.normalise()
	p := e.Prepare(message(t, "@alice:x", map[string]any{"body": "Bob Smith?"}), room)
	room.DisplayNames["@dave:x"] = "Dave"
	if e.Evaluate(p, e.Compile("@bob:x", rs)) == nil || e.Evaluate(p, e.Compile("@dave:x", rs)) != nil {
		t.Error("contains_display_name leaked between users")
	}
}

func TestRoomMemberCount(t *testing.T) {
	ev := message(t, "@a:x", map[string]any{"body": "hi"})
	for _, c := range []struct {
		is    string
		count int
		want  bool
	}{
		{"2", 2, true}, {"2", 3, false}, {"==2", 2, true},
		{"<2", 1, true}, {"<2", 2, false},
		{">2", 3, true}, {">2", 2, false},
		{">=2", 2, true}, {">=2", 1, false},
		{"<=10", 10, true}, {"<=10", 11, false},
		{"", 2, false}, {"two", 2, false}, {"=2", 2, false}, {"-1", 2, false},
	} {
		room := &RoomContext{MemberCount: c.count}
		if got := matchesCond(t, ev, room, "@u:x", Condition{Kind: CondRoomMemberCount, Is: c.is}); got != c.want {
			t.Errorf("is %q with %d members: %v, want %v", c.is, c.count, got, c.want)
		}
	}
}

func TestSenderNotificationPermission(t *testing.T) {
	pl := powerLevels(t, "@creator:x", map[string]any{
		"users":         map[string]any{"@mod:x": 50, "@low:x": 10, "@creator:x": 100},
		"notifications": map[string]any{"custom": 10},
	})
	cond := Condition{Kind: CondSenderNotificationPermission, Key: "room"}
	custom := Condition{Kind: CondSenderNotificationPermission, Key: "custom"}
	room := &RoomContext{MemberCount: 10, Power: pl}
	for _, c := range []struct {
		sender string
		cond   Condition
		want   bool
	}{
		{"@mod:x", cond, true}, // room defaults to 50
		{"@low:x", cond, false},
		{"@nobody:x", cond, false},
		{"@low:x", custom, true},
		{"@nobody:x", custom, false},
	} {
		ev := message(t, c.sender, map[string]any{"body": "@room"})
		if got := matchesCond(t, ev, room, "@u:x", c.cond); got != c.want {
			t.Errorf("%s for %s: %v, want %v", c.cond.Key, c.sender, got, c.want)
		}
	}
	if matchesCond(t, message(t, "@mod:x", nil), &RoomContext{}, "@u:x", cond) {
		t.Error("without power levels nobody may notify")
	}
}

func TestUnknownConditionNeverMatches(t *testing.T) {
	ev := message(t, "@a:x", map[string]any{"body": "hi"})
	if matchesCond(t, ev, nil, "@u:x", Condition{Kind: "org.example.future"}) {
		t.Error("an unknown condition matched")
	}
	if !matchesCond(t, ev, nil, "@u:x") {
		t.Error("a rule without conditions must match everything")
	}
}

// TestDefaultRules checks what the spec's default rules do with common
// events.
func TestDefaultRules(t *testing.T) {
	const me = "@me:example.org"
	rs := DefaultRules(me)
	pl := powerLevels(t, "@admin:example.org", map[string]any{"users": map[string]any{"@admin:example.org": 100}})
	group := &RoomContext{MemberCount: 5, Power: pl, DisplayNames: map[string]string{me: "Me Myself"}}
	direct := &RoomContext{MemberCount: 2, Power: pl}
	type want struct {
		notify, highlight bool
		sound             string
		rule              string
	}
	cases := []struct {
		name string
		ev   *event.Event
		room *RoomContext
		want *want
	}{
		{"group message", message(t, "@a:example.org", map[string]any{"msgtype": "m.text", "body": "hi"}), group,
			&want{notify: true, rule: ".m.rule.message"}},
		{"one-to-one message", message(t, "@a:example.org", map[string]any{"msgtype": "m.text", "body": "hi"}), direct,
			&want{notify: true, sound: `"default"`, rule: ".m.rule.room_one_to_one"}},
		{"notice", message(t, "@a:example.org", map[string]any{"msgtype": "m.notice", "body": "beep"}), direct,
			&want{rule: ".m.rule.suppress_notices"}},
		{"mention", message(t, "@a:example.org", map[string]any{"body": "hey", "m.mentions": map[string]any{"user_ids": []string{me}}}), group,
			&want{notify: true, highlight: true, sound: `"default"`, rule: ".m.rule.is_user_mention"}},
		{"someone else's mention", message(t, "@a:example.org", map[string]any{"body": "hey", "m.mentions": map[string]any{"user_ids": []string{"@other:example.org"}}}), group,
			&want{notify: true, rule: ".m.rule.message"}},
		{"display name in body (legacy rule gone)", message(t, "@a:example.org", map[string]any{"body": "Me Myself!"}), group,
			&want{notify: true, rule: ".m.rule.message"}},
		{"room mention by admin", message(t, "@admin:example.org", map[string]any{"body": "all", "m.mentions": map[string]any{"room": true}}), group,
			&want{notify: true, highlight: true, rule: ".m.rule.is_room_mention"}},
		{"room mention by nobody", message(t, "@a:example.org", map[string]any{"body": "all", "m.mentions": map[string]any{"room": true}}), group,
			&want{notify: true, rule: ".m.rule.message"}},
		{"encrypted in group", mkEvent(t, map[string]any{"type": "m.room.encrypted", "content": map[string]any{"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "x"}}), group,
			&want{notify: true, rule: ".m.rule.encrypted"}},
		{"encrypted one-to-one", mkEvent(t, map[string]any{"type": "m.room.encrypted", "content": map[string]any{"ciphertext": "x"}}), direct,
			&want{notify: true, sound: `"default"`, rule: ".m.rule.encrypted_room_one_to_one"}},
		{"invite for me", mkEvent(t, map[string]any{"type": "m.room.member", "state_key": me, "content": map[string]any{"membership": "invite"}}), group,
			&want{notify: true, sound: `"default"`, rule: ".m.rule.invite_for_me"}},
		{"someone else's invite", mkEvent(t, map[string]any{"type": "m.room.member", "state_key": "@x:y", "content": map[string]any{"membership": "invite"}}), group,
			&want{rule: ".m.rule.member_event"}},
		{"join", mkEvent(t, map[string]any{"type": "m.room.member", "state_key": "@x:y", "sender": "@x:y", "content": map[string]any{"membership": "join"}}), group,
			&want{rule: ".m.rule.member_event"}},
		{"tombstone", mkEvent(t, map[string]any{"type": "m.room.tombstone", "state_key": "", "content": map[string]any{"replacement_room": "!n:x"}}), group,
			&want{notify: true, highlight: true, rule: ".m.rule.tombstone"}},
		{"tombstone with a state key", mkEvent(t, map[string]any{"type": "m.room.tombstone", "state_key": "x", "content": map[string]any{}}), group, nil},
		{"reaction", mkEvent(t, map[string]any{"type": "m.reaction", "content": map[string]any{"m.relates_to": map[string]any{"rel_type": "m.annotation", "event_id": "$x", "key": "👍"}}}), direct,
			&want{rule: ".m.rule.reaction"}},
		{"edit", message(t, "@a:example.org", map[string]any{"body": "* fixed", "m.relates_to": map[string]any{"rel_type": "m.replace", "event_id": "$x"}}), direct,
			&want{rule: ".m.rule.suppress_edits"}},
		{"server acl", mkEvent(t, map[string]any{"type": "m.room.server_acl", "state_key": "", "content": map[string]any{}}), group,
			&want{rule: ".m.rule.room.server_acl"}},
		{"call", mkEvent(t, map[string]any{"type": "m.call.invite", "content": map[string]any{}}), group,
			&want{notify: true, sound: `"ring"`, rule: ".m.rule.call"}},
		{"topic change", mkEvent(t, map[string]any{"type": "m.room.topic", "state_key": "", "content": map[string]any{"topic": "x"}}), group, nil},
	}
	for _, c := range cases {
		got := evalRules(c.ev, c.room, me, rs)
		if c.want == nil {
			if got != nil {
				t.Errorf("%s: matched %s, want no rule", c.name, got.RuleID)
			}
			continue
		}
		if got == nil {
			t.Errorf("%s: no rule matched, want %s", c.name, c.want.rule)
			continue
		}
		if got.RuleID != c.want.rule || got.Notify != c.want.notify || got.Highlight != c.want.highlight || string(got.Tweaks["sound"]) != c.want.sound {
			t.Errorf("%s: got %s notify=%v highlight=%v sound=%s, want %+v", c.name, got.RuleID, got.Notify, got.Highlight, got.Tweaks["sound"], *c.want)
		}
	}
	master := DefaultRules(me)
	master.Override[0].Enabled = true
	if o := evalRules(cases[0].ev, group, me, master); o == nil || o.RuleID != ".m.rule.master" || o.Notify {
		t.Errorf("enabled master rule: %+v", o)
	}
}

// TestUserRules checks room, sender and content rules and their priority.
func TestUserRules(t *testing.T) {
	const me = "@me:example.org"
	rs := DefaultRules(me)
	rs.Content = []*Rule{{RuleID: "cake", Enabled: true, Pattern: strp("cake"), Actions: []json.RawMessage{raw(`"notify"`), raw(`{"set_tweak":"highlight"}`)}}}
	rs.Room = []*Rule{{RuleID: testRoom, Enabled: true, Actions: []json.RawMessage{}}}
	rs.Sender = []*Rule{{RuleID: "@vip:example.org", Enabled: true, Actions: []json.RawMessage{raw(`"notify"`), raw(`{"set_tweak":"sound","value":"vip"}`)}}}
	group := &RoomContext{MemberCount: 5}
	if o := evalRules(message(t, "@a:example.org", map[string]any{"body": "Cake time"}), group, me, rs); o == nil || o.RuleID != "cake" || !o.Highlight {
		t.Errorf("keyword: %+v", o)
	}
	// The room rule mutes the room, but content rules come first.
	if o := evalRules(message(t, "@a:example.org", map[string]any{"body": "hi"}), group, me, rs); o == nil || o.RuleID != testRoom || o.Notify {
		t.Errorf("room rule: %+v", o)
	}
	// Room rules outrank sender rules.
	if o := evalRules(message(t, "@vip:example.org", map[string]any{"body": "hi"}), group, me, rs); o == nil || o.RuleID != testRoom {
		t.Errorf("room before sender: %+v", o)
	}
	rs.Room = nil
	if o := evalRules(message(t, "@vip:example.org", map[string]any{"body": "hi"}), group, me, rs); o == nil || o.RuleID != "@vip:example.org" || string(o.Tweaks["sound"]) != `"vip"` {
		t.Errorf("sender rule: %+v", o)
	}
	rs.Sender[0].Enabled = false
	if o := evalRules(message(t, "@vip:example.org", map[string]any{"body": "hi"}), group, me, rs); o == nil || o.RuleID != ".m.rule.message" {
		t.Errorf("disabled sender rule: %+v", o)
	}
}

// TestCompileAfterPrepare checks rules compiled after the event was
// prepared (a user's rules loaded mid-event): their conditions and paths
// are not in the prepared tables yet and must still be evaluated.
func TestCompileAfterPrepare(t *testing.T) {
	e := NewEvaluator()
	ev := message(t, "@a:x", map[string]any{"body": "hi", "deep": map[string]any{"er": "value"}})
	p := e.Prepare(ev, &RoomContext{MemberCount: 3})
	rs := &Ruleset{Override: []*Rule{{RuleID: "late", Enabled: true, Actions: []json.RawMessage{raw(`"notify"`)},
		Conditions: []Condition{{Kind: CondEventMatch, Key: "content.deep.er", Pattern: strp("val*")}, {Kind: CondRoomMemberCount, Is: ">2"}}}}}
	rs.normalise()
	if o := e.Evaluate(p, e.Compile("@u:x", rs)); o == nil || o.RuleID != "late" {
		t.Fatalf("late rules: %+v", o)
	}
	// A second user with the same rules, now interned, on the same event.
	if o := e.Evaluate(p, e.Compile("@v:x", rs)); o == nil || o.RuleID != "late" {
		t.Fatalf("second user: %+v", o)
	}
}

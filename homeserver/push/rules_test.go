package push

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func ids(list []*Rule) []string {
	out := []string{}
	for _, r := range list {
		out = append(out, r.RuleID)
	}
	return out
}

// TestDefaultRuleOrder checks the default rules against the spec's list,
// in its order.
func TestDefaultRuleOrder(t *testing.T) {
	rs := DefaultRules("@me:x")
	wantOverride := []string{".m.rule.master", ".m.rule.suppress_notices", ".m.rule.invite_for_me", ".m.rule.member_event",
		".m.rule.is_user_mention", ".m.rule.is_room_mention", ".m.rule.tombstone", ".m.rule.reaction",
		".m.rule.room.server_acl", ".m.rule.suppress_edits"}
	wantUnderride := []string{".m.rule.call", ".m.rule.encrypted_room_one_to_one", ".m.rule.room_one_to_one",
		".m.rule.message", ".m.rule.encrypted"}
	if got := ids(rs.Override); !reflect.DeepEqual(got, wantOverride) {
		t.Errorf("override: %v", got)
	}
	if got := ids(rs.Underride); !reflect.DeepEqual(got, wantUnderride) {
		t.Errorf("underride: %v", got)
	}
	if len(rs.Content) != 0 || len(rs.Room) != 0 || len(rs.Sender) != 0 {
		t.Errorf("content/room/sender: %v %v %v", ids(rs.Content), ids(rs.Room), ids(rs.Sender))
	}
	for _, k := range Kinds {
		for _, r := range *rs.List(k) {
			if !r.Default || r.Enabled == (r.RuleID == masterRuleID) {
				t.Errorf("%s: default=%v enabled=%v", r.RuleID, r.Default, r.Enabled)
			}
		}
	}
	// The owner's ID replaces the spec's placeholder.
	invite, _ := rs.Find(KindOverride, ".m.rule.invite_for_me")
	mention, _ := rs.Find(KindOverride, ".m.rule.is_user_mention")
	if *invite.Conditions[2].Pattern != "@me:x" || string(mention.Conditions[0].Value) != `"@me:x"` {
		t.Errorf("placeholders: %+v %s", invite.Conditions[2], mention.Conditions[0].Value)
	}
	// The JSON has every kind, conditions on override and underride rules
	// (even empty), and the tombstone's empty pattern.
	raw, _ := json.Marshal(PushRulesContent{Global: rs})
	s := string(raw)
	for _, want := range []string{`"content":[]`, `"room":[]`, `"sender":[]`,
		`{"rule_id":".m.rule.master","default":true,"enabled":false,"conditions":[],"actions":[]}`,
		`{"kind":"event_match","key":"state_key","pattern":""}`,
		`{"kind":"event_property_is","key":"content.m\\.mentions.room","value":true}`} {
		if !strings.Contains(s, want) {
			t.Errorf("JSON lacks %s:\n%s", want, s)
		}
	}
	// Each call gets its own copy.
	rs.Override[0].Enabled = true
	if DefaultRules("@me:x").Override[0].Enabled {
		t.Error("DefaultRules returned shared rules")
	}
}

func TestParseActions(t *testing.T) {
	got, err := ParseActions([]json.RawMessage{raw(`"notify"`), raw(`"dont_notify"`), raw(`"coalesce"`), raw(`{ "set_tweak" : "sound", "value": "x" }`)})
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := json.Marshal(got); string(b) != `["notify",{"set_tweak":"sound","value":"x"}]` {
		t.Errorf("got %s", b)
	}
	for _, bad := range []string{`"explode"`, `42`, `{"value":1}`, `{"set_tweak":7}`, `null`} {
		if _, err := ParseActions([]json.RawMessage{raw(bad)}); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v", bad, err)
		}
	}
}

func notifyActions() []json.RawMessage { return []json.RawMessage{raw(`"notify"`)} }

func TestPutRuleOrdering(t *testing.T) {
	rs := DefaultRules("@me:x")
	put := func(id, before, after string) error {
		return putRule(rs, KindOverride, id, before, after, RuleInput{Actions: notifyActions(), Conditions: []Condition{}})
	}
	mustPut := func(id, before, after string) {
		t.Helper()
		if err := put(id, before, after); err != nil {
			t.Fatalf("put %s: %v", id, err)
		}
	}
	mustPut("a", "", "")
	mustPut("b", "", "") // newest first, right below master
	mustPut("c", "", "a")
	mustPut("d", "a", "")
	mustPut("e", "b", "c") // before wins
	got := ids(rs.Override)[:6]
	want := []string{".m.rule.master", "e", "b", "d", "a", "c"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("order %v, want %v", got, want)
	}
	// Replacing keeps the place and the enabled flag unless moved.
	if err := setEnabled(rs, KindOverride, "d", false); err != nil {
		t.Fatal(err)
	}
	mustPut("d", "", "")
	if r, i := rs.Find(KindOverride, "d"); i != 3 || r.Enabled {
		t.Errorf("replaced rule at %d enabled=%v", i, r.Enabled)
	}
	mustPut("d", "", "c")
	if _, i := rs.Find(KindOverride, "d"); i != 5 {
		t.Errorf("moved rule at %d", i)
	}
	if ids(rs.Override)[6] != ".m.rule.suppress_notices" {
		t.Errorf("user rules must rank above the server-default rules: %v", ids(rs.Override))
	}
	for _, c := range []struct {
		id, before, after string
		err               error
	}{
		{"x", "nope", "", ErrRelativeNotFound},
		{"x", "", ".m.rule.message", ErrInvalid},
		{".m.rule.mine", "", "", ErrInvalid},
		{"a/b", "", "", ErrInvalid},
		{`a\b`, "", "", ErrInvalid},
		{"a", "a", "", ErrInvalid},
	} {
		if err := put(c.id, c.before, c.after); !errors.Is(err, c.err) {
			t.Errorf("put %q before=%q after=%q: %v, want %v", c.id, c.before, c.after, err, c.err)
		}
	}
	if err := putRule(rs, KindContent, "kw", "", "", RuleInput{Actions: notifyActions()}); !errors.Is(err, ErrMissingParam) {
		t.Errorf("content rule without pattern: %v", err)
	}
	if err := putRule(rs, KindOverride, "noact", "", "", RuleInput{}); !errors.Is(err, ErrMissingParam) {
		t.Errorf("rule without actions: %v", err)
	}
	if err := putRule(rs, KindOverride, "badcond", "", "", RuleInput{Actions: notifyActions(),
		Conditions: []Condition{{Kind: CondRoomMemberCount, Is: "lots"}}}); !errors.Is(err, ErrInvalid) {
		t.Errorf("bad condition: %v", err)
	}
	if err := putRule(rs, KindRoom, "not-a-room", "", "", RuleInput{Actions: notifyActions()}); !errors.Is(err, ErrInvalid) {
		t.Errorf("room rule with a bad ID: %v", err)
	}
	if err := deleteRule(rs, KindOverride, ".m.rule.master"); !errors.Is(err, ErrInvalid) {
		t.Errorf("deleting a default rule: %v", err)
	}
	if err := deleteRule(rs, KindOverride, "zz"); !errors.Is(err, ErrNotFound) {
		t.Errorf("deleting nothing: %v", err)
	}
	if err := deleteRule(rs, KindOverride, "e"); err != nil {
		t.Fatal(err)
	}
	if r, _ := rs.Find(KindOverride, "e"); r != nil {
		t.Error("deleted rule still there")
	}
	if err := setActions(rs, KindUnderride, ".m.rule.message", []json.RawMessage{}); err != nil {
		t.Fatal(err)
	}
	if r, _ := rs.Find(KindUnderride, ".m.rule.message"); len(r.Actions) != 0 {
		t.Error("actions of a default rule not changed")
	}
}

// TestMerge checks how stored rules combine with the server's defaults.
func TestMerge(t *testing.T) {
	stored := DefaultRules("@me:x")
	if err := putRule(stored, KindOverride, "mine", "", "", RuleInput{Actions: notifyActions()}); err != nil {
		t.Fatal(err)
	}
	if err := putRule(stored, KindUnderride, "late", "", "", RuleInput{Actions: notifyActions()}); err != nil {
		t.Fatal(err)
	}
	_ = setEnabled(stored, KindOverride, masterRuleID, true)
	_ = setActions(stored, KindUnderride, ".m.rule.message", nil)
	_ = setActions(stored, KindUnderride, ".m.rule.encrypted", []json.RawMessage{})
	// A stored default rule this server no longer has, with conditions a
	// client tried to change, and a rule lost from the defaults.
	stored.Override = append(stored.Override, &Rule{RuleID: ".m.rule.contains_display_name", Default: true, Enabled: true,
		Conditions: []Condition{{Kind: CondContainsDisplayName}}, Actions: notifyActions()})
	stored.Override[2].Conditions = nil // .m.rule.suppress_notices
	_, call := stored.Find(KindUnderride, ".m.rule.call")
	stored.Underride = append(stored.Underride[:call], stored.Underride[call+1:]...)
	raw, _ := json.Marshal(PushRulesContent{Global: stored})
	got := Merge(decodeStored(raw), "@me:x")
	if ids := ids(got.Override); ids[0] != masterRuleID || ids[1] != "mine" || ids[2] != ".m.rule.suppress_notices" || len(ids) != 11 {
		t.Errorf("override: %v", ids)
	}
	if !got.Override[0].Enabled {
		t.Error("the master rule's enabled flag was lost")
	}
	if len(got.Override[2].Conditions) != 1 {
		t.Error("default rule conditions must come from the server")
	}
	if ids := ids(got.Underride); ids[0] != "late" || len(ids) != 6 {
		t.Errorf("underride: %v", ids)
	}
	msg, _ := got.Find(KindUnderride, ".m.rule.message")
	enc, _ := got.Find(KindUnderride, ".m.rule.encrypted")
	if len(msg.Actions) != 1 || len(enc.Actions) != 0 {
		t.Errorf("actions: message %s encrypted %s", msg.Actions, enc.Actions)
	}
	if Merge(nil, "@me:x") == nil || Merge(decodeStored([]byte("garbage")), "@me:x").Override[0].RuleID != masterRuleID {
		t.Error("unusable stored rules must give the defaults")
	}
}

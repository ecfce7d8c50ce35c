package filter

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"
)

func TestMatchType(t *testing.T) {
	cases := []struct {
		pattern, typ string
		want         bool
	}{
		{"m.room.message", "m.room.message", true},
		{"m.room.message", "m.room.messages", false},
		{"m.room.message", "m.room.messag", false},
		{"*", "", true},
		{"*", "anything", true},
		{"m.room.*", "m.room.member", true},
		{"m.room.*", "m.room.", true},
		{"m.room.*", "m.roo", false},
		{"m.room.*", "org.m.room.x", false},
		{"*.member", "m.room.member", true},
		{"*.member", "m.room.members", false},
		{"m.*.member", "m.room.member", true},
		{"m.*.member", "m.member", false},
		{"m.*.member", "m..member", true},
		{"*a*b*c*", "xxaxxbxxcxx", true},
		{"*a*b*c*", "xxaxxcxxbxx", false},
		{"a*a", "a", false}, // head and tail must not overlap
		{"a*a", "aa", true},
		{"a**b", "ab", true},
		{"*ab*ab", "abab", true},
		{"*ab*ab", "ab", false},
		{"m.room.message", "M.ROOM.MESSAGE", false},
	}
	for _, tc := range cases {
		if got := MatchType(tc.pattern, tc.typ); got != tc.want {
			t.Errorf("MatchType(%q, %q) = %v, want %v", tc.pattern, tc.typ, got, tc.want)
		}
	}
}

func mustParse(t *testing.T, s string) *Filter {
	t.Helper()
	f, err := Parse([]byte(s))
	if err != nil {
		t.Fatalf("Parse(%s): %v", s, err)
	}
	return f
}

func TestEventFilterAllows(t *testing.T) {
	type ev struct{ typ, sender string }
	cases := []struct {
		name   string
		filter string
		allow  []ev
		refuse []ev
	}{
		{"absent lists allow all", `{}`, []ev{{"m.room.message", "@a:x"}, {"x", "@b:y"}}, nil},
		{"empty types allows none", `{"types": []}`, nil, []ev{{"m.room.message", "@a:x"}}},
		{"empty senders allows none", `{"senders": []}`, nil, []ev{{"m.room.message", "@a:x"}}},
		{"types with wildcard", `{"types": ["m.room.*"]}`,
			[]ev{{"m.room.message", "@a:x"}, {"m.room.member", "@a:x"}}, []ev{{"m.presence", "@a:x"}}},
		{"not_types wins over types", `{"types": ["m.room.*"], "not_types": ["m.room.member"]}`,
			[]ev{{"m.room.message", "@a:x"}}, []ev{{"m.room.member", "@a:x"}}},
		{"not_types wildcard", `{"not_types": ["*"]}`, nil, []ev{{"m.room.message", "@a:x"}}},
		{"senders", `{"senders": ["@a:x"]}`, []ev{{"t", "@a:x"}}, []ev{{"t", "@b:x"}}},
		{"not_senders wins over senders", `{"senders": ["@a:x", "@b:x"], "not_senders": ["@b:x"]}`,
			[]ev{{"t", "@a:x"}}, []ev{{"t", "@b:x"}, {"t", "@c:x"}}},
		{"senders are not patterns", `{"senders": ["@*:x"]}`, nil, []ev{{"t", "@a:x"}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var f EventFilter
			if err := json.Unmarshal([]byte(tc.filter), &f); err != nil {
				t.Fatal(err)
			}
			for _, e := range tc.allow {
				if !f.Allows(e.typ, e.sender) {
					t.Errorf("refused %v", e)
				}
			}
			for _, e := range tc.refuse {
				if f.Allows(e.typ, e.sender) {
					t.Errorf("allowed %v", e)
				}
			}
		})
	}
	var nilFilter *EventFilter
	if !nilFilter.Allows("t", "@a:x") {
		t.Error("nil filter refused an event")
	}
}

func TestRoomEventFilterAllows(t *testing.T) {
	f := mustParse(t, `{"room": {"timeline": {"rooms": ["!a:x", "!b:x"], "not_rooms": ["!b:x"], "types": ["m.room.message"], "contains_url": true}}}`)
	tl := f.Timeline()
	cases := []struct {
		typ, room string
		url, want bool
	}{
		{"m.room.message", "!a:x", true, true},
		{"m.room.message", "!a:x", false, false}, // contains_url: true
		{"m.room.message", "!b:x", true, false},  // not_rooms wins
		{"m.room.message", "!c:x", true, false},  // not in rooms
		{"m.room.member", "!a:x", true, false},
	}
	for _, tc := range cases {
		if got := tl.Allows(tc.typ, "@u:x", tc.room, tc.url); got != tc.want {
			t.Errorf("Allows(%s, %s, url=%v) = %v, want %v", tc.typ, tc.room, tc.url, got, tc.want)
		}
	}
	noURL := mustParse(t, `{"room": {"timeline": {"contains_url": false}}}`).Timeline()
	if noURL.Allows("t", "@u:x", "!a:x", true) || !noURL.Allows("t", "@u:x", "!a:x", false) {
		t.Error("contains_url: false must keep only events without url")
	}
	anyURL := mustParse(t, `{"room": {"timeline": {}}}`).Timeline()
	if !anyURL.Allows("t", "@u:x", "!a:x", true) || !anyURL.Allows("t", "@u:x", "!a:x", false) {
		t.Error("absent contains_url must not consider url")
	}
}

func TestRoomFilterAndAccessors(t *testing.T) {
	var none *Filter
	if none.Timeline() != nil || none.State() != nil || none.Ephemeral() != nil || none.RoomAccountData() != nil ||
		none.GlobalAccountData() != nil || none.PresenceFilter() != nil || none.IncludeLeave() || none.Timeline().LazyLoading() {
		t.Fatal("nil filter accessors must return nil/false")
	}
	if !none.RoomFilter().AllowsRoom("!a:x") || !none.Timeline().Allows("t", "@u:x", "!a:x", false) {
		t.Fatal("nil filter must allow everything")
	}
	f := mustParse(t, `{"room": {"not_rooms": ["!spam:x"], "include_leave": true,
		"state": {"lazy_load_members": true, "include_redundant_members": true},
		"timeline": {"limit": 30}, "ephemeral": {"types": []}, "account_data": {"not_types": ["m.tag"]}},
		"account_data": {"types": ["m.direct"]}, "presence": {"not_senders": ["@bot:x"]}}`)
	if f.RoomFilter().AllowsRoom("!spam:x") || !f.RoomFilter().AllowsRoom("!ok:x") {
		t.Error("room.not_rooms")
	}
	if !f.IncludeLeave() || !f.State().LazyLoading() || !f.State().IncludeRedundantMembers || f.Timeline().LazyLoading() {
		t.Error("flags")
	}
	if f.Ephemeral().Allows("m.typing", "@u:x", "!a:x", false) {
		t.Error("empty ephemeral types allowed an event")
	}
	if f.RoomAccountData().Allows("m.tag", "", "!a:x", false) || !f.GlobalAccountData().Allows("m.direct", "") ||
		f.GlobalAccountData().Allows("m.push_rules", "") || f.PresenceFilter().Allows("m.presence", "@bot:x") {
		t.Error("account data / presence filters")
	}
	if got := f.Timeline().LimitOr(10, 100); got != 30 {
		t.Errorf("timeline limit %d, want 30", got)
	}
	if got := f.State().LimitOr(10, 100); got != 10 {
		t.Errorf("default limit %d, want 10", got)
	}
	big := mustParse(t, `{"room": {"timeline": {"limit": 100000}}}`)
	if got := big.Timeline().LimitOr(10, 100); got != 100 {
		t.Errorf("limit not capped: %d", got)
	}
	var nilEF *EventFilter
	if nilEF.LimitOr(7, 100) != 7 {
		t.Error("nil filter limit")
	}
}

func TestParseErrors(t *testing.T) {
	cases := []struct {
		body, code string
	}{
		{`{"room": `, "M_NOT_JSON"},
		{`[]`, "M_BAD_JSON"},
		{`"x"`, "M_BAD_JSON"},
		{`{"event_fields": "content"}`, "M_BAD_JSON"},
		{`{"event_fields": [1]}`, "M_BAD_JSON"},
		{`{"room": []}`, "M_BAD_JSON"},
		{`{"room": {"timeline": {"limit": "10"}}}`, "M_BAD_JSON"},
		{`{"room": {"timeline": {"limit": 1.5}}}`, "M_BAD_JSON"},
		{`{"room": {"timeline": {"types": "m.room.message"}}}`, "M_BAD_JSON"},
		{`{"room": {"include_leave": "yes"}}`, "M_BAD_JSON"},
		{`{"room": {"timeline": {"contains_url": 1}}}`, "M_BAD_JSON"},
		{`{"presence": {"senders": [null, 3]}}`, "M_BAD_JSON"},
		{`{"event_format": "raw"}`, "M_INVALID_PARAM"},
		{`{"event_fields": [""]}`, "M_INVALID_PARAM"},
		{`{"room": {"timeline": {"limit": 0}}}`, "M_INVALID_PARAM"},
		{`{"room": {"state": {"limit": -1}}}`, "M_INVALID_PARAM"},
		{`{"presence": {"limit": 0}}`, "M_INVALID_PARAM"},
		{`{"room": {"rooms": ["#alias:x"]}}`, "M_INVALID_PARAM"},
		{`{"room": {"ephemeral": {"not_rooms": ["room"]}}}`, "M_INVALID_PARAM"},
		{`{"room": {"timeline": {"senders": ["alice"]}}}`, "M_INVALID_PARAM"},
		{`{"account_data": {"not_senders": ["!x:y"]}}`, "M_INVALID_PARAM"},
	}
	for _, tc := range cases {
		_, err := Parse([]byte(tc.body))
		var fe *Error
		if !errors.As(err, &fe) || fe.Code != tc.code {
			t.Errorf("Parse(%s) = %v, want %s", tc.body, err, tc.code)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	// Absent and empty lists differ, and a filter must come back as sent.
	in := `{"event_fields":["type","content.body"],"event_format":"client","presence":{"types":[]},` +
		`"room":{"not_rooms":["!a:x"],"timeline":{"limit":10,"types":["m.room.message"],"contains_url":false,"lazy_load_members":true}},"future_key":1}`
	f := mustParse(t, in)
	out, err := json.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"event_fields":["type","content.body"],"event_format":"client","presence":{"types":[]},` +
		`"room":{"not_rooms":["!a:x"],"timeline":{"limit":10,"types":["m.room.message"],"contains_url":false,"lazy_load_members":true}}}`
	if string(out) != want {
		t.Fatalf("round trip:\n got %s\nwant %s", out, want)
	}
	if f.Presence.Types == nil || f.Presence.NotTypes != nil {
		t.Fatal("empty list decoded as absent, or absent as empty")
	}
}

func TestSplitPath(t *testing.T) {
	cases := map[string][]string{
		"content.body":           {"content", "body"},
		`content.m\.relates_to`:  {"content", "m.relates_to"},
		`content.m\\foo`:         {"content", `m\foo`},
		`content.a\xb`:           {"content", `a\xb`},
		`type`:                   {"type"},
		`a\\.b`:                  {`a\`, "b"},
		`trailing\`:              {`trailing\`},
		`content.m\.new_content`: {"content", "m.new_content"},
	}
	for in, want := range cases {
		if got := SplitPath(in); !reflect.DeepEqual(got, want) {
			t.Errorf("SplitPath(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestProject(t *testing.T) {
	var event map[string]any
	_ = json.Unmarshal([]byte(`{"type":"m.room.message","sender":"@a:x","event_id":"$e",
		"content":{"body":"hi","msgtype":"m.text","m.relates_to":{"rel_type":"m.thread"}},"unsigned":{"age":5}}`), &event)
	f := mustParse(t, `{"event_fields":["type","content.body","content.m\\.relates_to.rel_type","content.missing","sender.x","unsigned"]}`)
	got, _ := json.Marshal(f.Project(event))
	want := `{"content":{"body":"hi","m.relates_to":{"rel_type":"m.thread"}},"type":"m.room.message","unsigned":{"age":5}}`
	if string(got) != want {
		t.Fatalf("Project:\n got %s\nwant %s", got, want)
	}
	all := mustParse(t, `{}`)
	if p := all.Project(event); len(p) != len(event) {
		t.Fatal("no event_fields must keep the event whole")
	}
	none := mustParse(t, `{"event_fields":[]}`)
	if p := none.Project(event); len(p) != 0 {
		t.Fatalf("empty event_fields kept %v", p)
	}
}

func TestParseRoomEventFilter(t *testing.T) {
	f, err := ParseRoomEventFilter([]byte(`{"types":["m.room.message"],"limit":5,"lazy_load_members":true}`))
	if err != nil {
		t.Fatal(err)
	}
	if !f.LazyLoading() || f.LimitOr(10, 100) != 5 || !f.Allows("m.room.message", "@a:x", "!r:x", false) || f.Allows("m.room.member", "@a:x", "!r:x", false) {
		t.Fatalf("unexpected filter %+v", f)
	}
	for body, code := range map[string]string{`{`: "M_NOT_JSON", `[]`: "M_BAD_JSON", `{"limit":"x"}`: "M_BAD_JSON",
		`{"limit":0}`: "M_INVALID_PARAM", `{}}, "presence": {`: "M_NOT_JSON"} {
		_, err := ParseRoomEventFilter([]byte(body))
		var fe *Error
		if !errors.As(err, &fe) || fe.Code != code {
			t.Errorf("ParseRoomEventFilter(%s) = %v, want %s", body, err, code)
		}
	}
}

package relations

import "testing"

func TestParseRelation(t *testing.T) {
	for _, c := range []struct {
		content string
		ok      bool
		want    relatesTo
	}{
		{`{"body":"plain"}`, false, relatesTo{}},
		{`{"m.relates_to":{"rel_type":"m.thread","event_id":"$root"}}`, true, relatesTo{RelType: "m.thread", EventID: "$root"}},
		{`{"m.relates_to":{"rel_type":"m.annotation","event_id":"$e","key":"👍"}}`, true, relatesTo{RelType: "m.annotation", EventID: "$e", Key: "👍"}},
		{`{"m.relates_to":{"rel_type":"m.annotation","event_id":"$e"}}`, false, relatesTo{}},
		{`{"m.relates_to":{"rel_type":"m.replace","event_id":"$e","key":"ignored"}}`, true, relatesTo{RelType: "m.replace", EventID: "$e"}},
		{`{"m.relates_to":{"m.in_reply_to":{"event_id":"$e"}}}`, false, relatesTo{}},
		{`{"m.relates_to":{"rel_type":"m.thread","event_id":"no-sigil"}}`, false, relatesTo{}},
		{`{"m.relates_to":{"rel_type":7,"event_id":"$e"}}`, false, relatesTo{}},
		{`{"m.relates_to":"nonsense"}`, false, relatesTo{}},
	} {
		got, ok := parseRelation([]byte(c.content))
		if ok != c.ok || got != c.want {
			t.Errorf("%s: %+v %v, want %+v %v", c.content, got, ok, c.want, c.ok)
		}
	}
}

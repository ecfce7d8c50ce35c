package filter

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"
)

// FuzzMatchType checks MatchType against a regular expression built from
// the pattern.
func FuzzMatchType(f *testing.F) {
	for _, s := range [][2]string{{"m.room.*", "m.room.member"}, {"*a*b", "ab"}, {"a*a", "a"}, {"**", ""}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pattern, typ string) {
		parts := strings.Split(pattern, "*")
		for i, p := range parts {
			parts[i] = regexp.QuoteMeta(p)
		}
		re, err := regexp.Compile(`^(?s:` + strings.Join(parts, ".*") + `)$`)
		if err != nil {
			t.Skip()
		}
		if got, want := MatchType(pattern, typ), re.MatchString(typ); got != want {
			t.Fatalf("MatchType(%q, %q) = %v, regexp says %v", pattern, typ, got, want)
		}
	})
}

// FuzzParse checks that Parse never panics and that what it accepts
// marshals and parses again to the same filter.
func FuzzParse(f *testing.F) {
	f.Add([]byte(`{"room":{"timeline":{"limit":10,"types":["m.*"]}},"event_fields":["a\\.b"]}`))
	f.Add([]byte(`{"presence":{"types":[]}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		flt, err := Parse(data)
		if err != nil {
			if _, ok := err.(*Error); !ok {
				t.Fatalf("error of type %T", err)
			}
			return
		}
		out, err := json.Marshal(flt)
		if err != nil {
			t.Fatal(err)
		}
		again, err := Parse(out)
		if err != nil {
			t.Fatalf("re-parsing %s: %v", out, err)
		}
		out2, _ := json.Marshal(again)
		if string(out) != string(out2) {
			t.Fatalf("not stable:\n%s\n%s", out, out2)
		}
	})
}

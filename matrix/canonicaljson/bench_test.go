package canonicaljson

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
)

// largeEvent builds a ~64 KiB m.room.power_levels event for a big room,
// the kind of state event that approaches the PDU size limit in practice.
// Keys are deliberately not in canonical order.
func largeEvent(tb testing.TB) []byte {
	tb.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	var users []string
	for i := 0; len(users) < 1250; i++ {
		users = append(users, fmt.Sprintf(`"@user%06d:server%02d.example.org": %d`, rng.IntN(1000000), rng.IntN(40), 10*rng.IntN(10)))
	}
	var b strings.Builder
	b.WriteString(`{
    "type": "m.room.power_levels",
    "state_key": "",
    "sender": "@admin:example.org",
    "room_id": "!Qd7EmVrw3nVk0wJxNgGHbkbSHgfYHxM4C6y4RHFfHKw",
    "origin_server_ts": 1718029423123,
    "depth": 912,
    "content": {
        "users_default": 0,
        "events_default": 0,
        "state_default": 50,
        "ban": 50, "kick": 50, "redact": 50, "invite": 0,
        "events": {"m.room.name": 50, "m.room.power_levels": 100, "m.room.history_visibility": 100, "m.room.canonical_alias": 50, "m.room.avatar": 50, "m.room.tombstone": 100, "m.room.server_acl": 100, "m.room.encryption": 100},
        "notifications": {"room": 50},
        "users": {
            `)
	b.WriteString(strings.Join(users, ",\n            "))
	b.WriteString(`
        }
    },
    "prev_events": ["$acR1l0raoZnm60CBwAVgqbZqoO-mYU81xysh1u7XcJk"],
    "auth_events": ["$CD66HAED5npg6074c6pDtLKalHjVfYb2q4Q3LZgrW6o", "$Rqnc-F-dvnEYJTyHq_iKxU2bZ1CI92-kuZq3a5lr5Zg"],
    "hashes": {"sha256": "ThisHashCoversAllFieldsInCaseThisIsRedacted"},
    "signatures": {"example.org": {"ed25519:a_XyZw": "These+Are+Sixty+Four+Bytes+Of+Signature+Encoded+In+Unpadded+Base64"}},
    "unsigned": {"age_ts": 1718029423123}
}`)
	return []byte(b.String())
}

func BenchmarkCanonicalize(b *testing.B) {
	small, err := os.ReadFile("testdata/event_2k.json")
	if err != nil {
		b.Fatal(err)
	}
	large := largeEvent(b)
	smallCanonical, err := Canonicalize(small)
	if err != nil {
		b.Fatal(err)
	}
	largeCanonical, err := Canonicalize(large)
	if err != nil {
		b.Fatal(err)
	}
	cases := []struct {
		name string
		in   []byte
		opts Options
	}{
		{"event_2k", small, Options{}},
		{"event_2k/strict", small, Options{Strict: true}},
		{"event_2k/canonical", smallCanonical, Options{Strict: true}},
		{"event_64k", large, Options{}},
		{"event_64k/strict", large, Options{Strict: true}},
		{"event_64k/canonical", largeCanonical, Options{Strict: true}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(c.in)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.opts.Canonicalize(c.in); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkMarshal(b *testing.B) {
	v := map[string]any{
		"type":             "m.room.message",
		"sender":           "@alice:example.org",
		"room_id":          "!jEsUZKDJdhlrceRyVU:example.org",
		"origin_server_ts": int64(1718029423123),
		"depth":            48213,
		"content":          map[string]any{"msgtype": "m.text", "body": "hello <world> & friends"},
		"prev_events":      []string{"$acR1l0raoZnm60CBwAVgqbZqoO-mYU81xysh1u7XcJk"},
		"auth_events":      []string{"$CD66HAED5npg6074c6pDtLKalHjVfYb2q4Q3LZgrW6o", "$Rqnc-F-dvnEYJTyHq_iKxU2bZ1CI92-kuZq3a5lr5Zg"},
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := (Options{Strict: true}).Marshal(v); err != nil {
			b.Fatal(err)
		}
	}
}

func TestBenchmarkFixtures(t *testing.T) {
	large := largeEvent(t)
	if n := len(large); n < 60000 || n > 70000 {
		t.Errorf("large event is %d bytes, want about 64 KiB", n)
	}
	out, err := strict.Canonicalize(large)
	if err != nil {
		t.Fatal(err)
	}
	if err := checkAgainstReference(large, out); err != nil {
		t.Error(err)
	}
}

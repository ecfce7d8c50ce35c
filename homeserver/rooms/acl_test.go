package rooms

import "testing"

func TestServerACLAlgorithm(t *testing.T) {
	allowAll := []string{"*"}
	cases := []struct {
		name        string
		allow, deny []string
		ipLiterals  bool
		server      string
		want        bool
	}{
		{"allow all", allowAll, nil, true, "example.org", true},
		{"port ignored", []string{"example.org"}, nil, true, "example.org:8448", true},
		{"denied by name", allowAll, []string{"evil.example"}, true, "evil.example", false},
		{"deny glob", allowAll, []string{"*.evil.example"}, true, "a.b.evil.example", false},
		{"deny wins over allow", []string{"*.example"}, []string{"bad.example"}, true, "bad.example", false},
		{"question mark", []string{"hs?.test"}, nil, true, "hs1.test", true},
		{"question mark is one char", []string{"hs?.test"}, nil, true, "hs10.test", false},
		{"not on the allow list", []string{"friends.example"}, nil, true, "stranger.example", false},
		{"empty allow denies all", nil, nil, true, "example.org", false},
		{"case-insensitive", []string{"Example.ORG"}, nil, true, "example.org", true},
		{"IP literal allowed", allowAll, nil, true, "192.0.2.1:8448", true},
		{"IP literal denied", allowAll, nil, false, "192.0.2.1", false},
		{"IPv6 literal denied", allowAll, nil, false, "[2001:db8::1]:8448", false},
	}
	for _, tc := range cases {
		if got := aclAllows(tc.allow, tc.deny, tc.ipLiterals, tc.server); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

package policy

import (
	"errors"
	"net/netip"
	"testing"
)

func TestServers(t *testing.T) {
	s, err := NewServers([]string{"*.friends.org", "partner.net", "ports.example:8448"}, []string{"bad.friends.org", "*"})
	if err != nil {
		t.Fatal(err)
	}
	// "*" in the deny list denies everything, even allowed names.
	if s.Allowed("partner.net") {
		t.Fatal("deny * did not win")
	}

	s, err = NewServers([]string{"*.friends.org", "partner.net", "ports.example:8448", "[::1]"}, []string{"bad.friends.org"})
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string]bool{
		"a.friends.org":      true,
		"a.b.friends.org":    true,
		"A.Friends.ORG":      true,
		"friends.org":        false, // the wildcard is for subdomains only
		"bad.friends.org":    false,
		"BAD.friends.org":    false,
		"bad.friends.org:80": false,
		"partner.net":        true,
		"partner.net:1234":   true,
		"ports.example:8448": true,
		"ports.example":      false,
		"ports.example:8449": false,
		"[::1]:8448":         true,
		"notfriends.org":     false,
		"evilfriends.org":    false,
		"not a name":         false,
	}
	for name, want := range cases {
		if got := s.Allowed(name); got != want {
			t.Errorf("Allowed(%q) = %v, want %v", name, got, want)
		}
	}
	if err := s.Check("x.org"); !errors.Is(err, ErrDenied) {
		t.Fatalf("Check: %v", err)
	}

	open, _ := NewServers(nil, []string{"evil.org"})
	if !open.Allowed("anything.org") || open.Allowed("evil.org:8448") {
		t.Fatal("empty allow list")
	}
	var none *Servers
	if !none.Allowed("x.org") {
		t.Fatal("nil policy must allow")
	}
	for _, bad := range []string{"", "*.", "*.[::1]", "a b", "**.x"} {
		if ValidatePattern(bad) == nil {
			t.Errorf("pattern %q accepted", bad)
		}
	}
}

func TestIsPrivate(t *testing.T) {
	cases := map[string]bool{
		"127.0.0.1":        true,
		"10.1.2.3":         true,
		"172.16.0.1":       true,
		"192.168.1.1":      true,
		"169.254.169.254":  true, // cloud metadata
		"100.64.0.1":       true,
		"0.0.0.0":          true,
		"255.255.255.255":  true,
		"224.0.0.1":        true,
		"::1":              true,
		"::":               true,
		"fe80::1":          true,
		"fd00::1":          true,
		"::ffff:127.0.0.1": true,
		"64:ff9b::a00:1":   true, // NAT64 of 10.0.0.1
		"64:ff9b::808:808": false,
		"8.8.8.8":          false,
		"1.1.1.1":          false,
		"2606:4700::1111":  false,
		"::ffff:8.8.8.8":   false,
	}
	for s, want := range cases {
		if got := IsPrivate(netip.MustParseAddr(s)); got != want {
			t.Errorf("IsPrivate(%s) = %v, want %v", s, got, want)
		}
	}
}

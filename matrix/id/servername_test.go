package id

import (
	"errors"
	"strings"
	"testing"
)

func TestParseServerName(t *testing.T) {
	valid := []string{
		// The spec's examples.
		"matrix.org",
		"matrix.org:8888",
		"1.2.3.4",
		"1.2.3.4:1234",
		"[1234:5678::abcd]",
		"[1234:5678::abcd]:5678",
		// More.
		"localhost",
		"domain",
		"MATRIX.ORG", // discouraged, but valid and distinct from matrix.org
		"xn--bcher-kva.example",
		"a-b.c-d.example",
		"matrix.org:1",
		"matrix.org:65535",
		"matrix.org:00080", // 1*5DIGIT allows leading zeros
		"0.0.0.0",
		"255.255.255.255:8448",
		"001.002.003.004", // 1*3DIGIT per group
		"1.2.3",           // not four groups, so a DNS name
		"1.2.3.4.5",
		"[::1]",
		"[::]",
		"[::1]:8448",
		"[::ffff:1.2.3.4]",
		"[2001:DB8::1]",
		"[0000:0000:0000:0000:0000:ffff:255.255.255.255]", // 45 characters
		strings.Repeat("a", 255),
		strings.Repeat("a", 249) + ":65535",
	}
	for _, s := range valid {
		got, err := ParseServerName(s)
		if err != nil {
			t.Errorf("ParseServerName(%q): %v", s, err)
		} else if string(got) != s {
			t.Errorf("ParseServerName(%q) = %q", s, got)
		}
	}

	invalid := []string{
		"",
		":8448",
		"matrix.org:",
		"matrix.org:0",
		"matrix.org:65536",
		"matrix.org:99999",
		"matrix.org:123456",
		"matrix.org:-1",
		"matrix.org:+80",
		"matrix.org:8a",
		"matrix.org:80:80",
		"matrix.org: 80",
		" matrix.org",
		"matrix .org",
		"exa_mple.org", // underscore is not a dns-char
		"example.org/",
		"user@example.org",
		"ümlaut.de",
		"1.2.3.256",
		"256.0.0.1",
		"999.999.999.999:80",
		"1234:5678::abcd", // unbracketed IPv6
		"[1234:5678::abcd",
		"1234:5678::abcd]",
		"[::1]x",
		"[::1]:",
		"[::1]:0",
		"[::1]:65536",
		"[::1]8448",
		"[]",
		"[:]",
		"[1.2.3.4]", // IPv4 is not an IPv6 literal
		"[g::1]",
		"[::1%eth0]",
		"[1:2:3:4:5:6:7:8:9]",
		"[1::2::3]",
		"[00000::1]",
		"[0000:0000:0000:0000:0000:ffff:255.255.255.2555]", // 46 characters
		"[[::1]]",
		strings.Repeat("a", 256),
		strings.Repeat("a", 250) + ":65535",
	}
	for _, s := range invalid {
		if got, err := ParseServerName(s); err == nil {
			t.Errorf("ParseServerName(%q) = %q, want error", s, got)
		} else if !errors.Is(err, ErrInvalidServerName) {
			t.Errorf("ParseServerName(%q): %v is not ErrInvalidServerName", s, err)
		}
	}
}

func TestServerNameHostPort(t *testing.T) {
	tests := []struct {
		in      ServerName
		host    string
		port    int
		hasPort bool
		ip      bool
	}{
		{"matrix.org", "matrix.org", 0, false, false},
		{"matrix.org:8888", "matrix.org", 8888, true, false},
		{"1.2.3.4", "1.2.3.4", 0, false, true},
		{"1.2.3.4:1234", "1.2.3.4", 1234, true, true},
		{"[1234:5678::abcd]", "1234:5678::abcd", 0, false, true},
		{"[1234:5678::abcd]:5678", "1234:5678::abcd", 5678, true, true},
		{"[::1]:8448", "::1", 8448, true, true},
		{"1.2.3", "1.2.3", 0, false, false},
		{"1.2.3.4.5", "1.2.3.4.5", 0, false, false},
		{"example.org:00080", "example.org", 80, true, false},
		{"localhost:65535", "localhost", 65535, true, false},
	}
	for _, tt := range tests {
		if _, err := ParseServerName(string(tt.in)); err != nil {
			t.Fatalf("%q: %v", tt.in, err)
		}
		host, port, hasPort := tt.in.HostPort()
		if host != tt.host || port != tt.port || hasPort != tt.hasPort {
			t.Errorf("%q.HostPort() = %q, %d, %v; want %q, %d, %v", tt.in, host, port, hasPort, tt.host, tt.port, tt.hasPort)
		}
		if ip := tt.in.IsIPLiteral(); ip != tt.ip {
			t.Errorf("%q.IsIPLiteral() = %v", tt.in, ip)
		}
		if tt.in.String() != string(tt.in) {
			t.Errorf("%q.String() = %q", tt.in, tt.in.String())
		}
	}
	// Unvalidated values must not panic.
	for _, s := range []ServerName{"", "[", "[::1", ":", "a:b:c", "[::1]:x"} {
		s.HostPort()
		s.IsIPLiteral()
	}
}

func TestErrorMessagesTruncateInput(t *testing.T) {
	_, err := ParseServerName(strings.Repeat("x", 100000))
	if err == nil || len(err.Error()) > 300 {
		t.Errorf("error message too long or missing: %d bytes", len(err.Error()))
	}
}

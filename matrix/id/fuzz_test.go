package id

import (
	"net"
	"strconv"
	"testing"
)

// FuzzParse checks that no parser panics and that whatever parses comes
// back unchanged from String, so parsing never silently alters an
// identifier that is later compared or signed.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"@alice:example.org", "@:[::1]:8448", "!x:domain", "!" + v4EventID[1:], "#room:1.2.3.4",
		v3EventID, v4EventID, "$0:domain", "ed25519:abc_1", "matrix.org:8448", "[1234:5678::abcd]:5678",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if u, err := ParseUserID(s); err == nil {
			if u.String() != s || len(s) > 255 {
				t.Fatalf("ParseUserID(%q) = %+v", s, u)
			}
			if u.IsCompliant() && ValidateLocalpartForRegistration(u.Localpart) == nil && u.Localpart == "" {
				t.Fatalf("empty localpart passed registration rules")
			}
		}
		if ValidateLocalpartForRegistration(s) == nil {
			u := UserID{Localpart: s, Server: "example.org"}
			if !u.IsCompliant() {
				t.Fatalf("registration-valid localpart %q is not compliant", s)
			}
		}
		if r, err := ParseRoomID(s); err == nil && r.String() != s {
			t.Fatalf("ParseRoomID(%q) = %+v", s, r)
		}
		if a, err := ParseRoomAlias(s); err == nil && a.String() != s {
			t.Fatalf("ParseRoomAlias(%q) = %+v", s, a)
		}
		if e, err := ParseEventID(s); err == nil {
			if e.String() != s {
				t.Fatalf("ParseEventID(%q) = %+v", s, e)
			}
			if r, err := RoomIDForCreateEvent(e); err == nil {
				if back, ok := r.CreateEventID(); !ok || back != e {
					t.Fatalf("create event round trip of %q", s)
				}
			}
		}
		if k, err := ParseKeyID(s); err == nil && k.String() != s {
			t.Fatalf("ParseKeyID(%q) = %+v", s, k)
		}
		if sn, err := ParseServerName(s); err == nil {
			host, port, hasPort := sn.HostPort()
			rebuilt := host
			if sn.IsIPLiteral() && sn[0] == '[' {
				rebuilt = "[" + host + "]"
			}
			if hasPort {
				if port < 1 || port > 65535 {
					t.Fatalf("%q: port %d", s, port)
				}
				rebuilt = net.JoinHostPort(host, strconv.Itoa(port))
			}
			// Leading zeros in the port are the only thing HostPort drops.
			if reparsed, err := ParseServerName(rebuilt); err != nil {
				t.Fatalf("%q: rebuilt %q does not parse: %v", s, rebuilt, err)
			} else if h2, p2, hp2 := reparsed.HostPort(); h2 != host || p2 != port || hp2 != hasPort {
				t.Fatalf("%q: rebuilt %q splits differently", s, rebuilt)
			}
		}
	})
}

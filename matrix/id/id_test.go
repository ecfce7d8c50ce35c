package id

import (
	"errors"
	"strings"
	"testing"
)

// pad returns s with its localpart padded with 'a's to n bytes in total.
func pad(sigil, server string, n int) string {
	return sigil + strings.Repeat("a", n-len(sigil)-1-len(server)) + ":" + server
}

func TestParseUserID(t *testing.T) {
	valid := []struct {
		in        string
		localpart string
		server    ServerName
		compliant bool
	}{
		{"@alice:example.org", "alice", "example.org", true},
		{"@a:domain", "a", "domain", true},
		{"@john.doe:example.com", "john.doe", "example.com", true},
		{"@a.b_c=d-e/f+g:example.org", "a.b_c=d-e/f+g", "example.org", true},
		{"@bob:1.2.3.4:8448", "bob", "1.2.3.4:8448", true},
		{"@bob:[::1]:8448", "bob", "[::1]:8448", true},
		// Historical localparts: accepted, some compliant, some not.
		{"@Alice:example.org", "Alice", "example.org", true},
		{"@~!#$%&*:example.org", "~!#$%&*", "example.org", true},
		{"@:example.org", "", "example.org", false},
		{"@al ice:example.org", "al ice", "example.org", false},
		{"@\x01\x7f:example.org", "\x01\x7f", "example.org", false},
		{"@日本語:example.org", "日本語", "example.org", false},
		{"@\U0010FFFF:example.org", "\U0010FFFF", "example.org", false},
		{pad("@", "example.org", 255), strings.Repeat("a", 255-13), "example.org", true},
	}
	for _, tt := range valid {
		u, err := ParseUserID(tt.in)
		if err != nil {
			t.Errorf("ParseUserID(%q): %v", tt.in, err)
			continue
		}
		if u.Localpart != tt.localpart || u.Server != tt.server {
			t.Errorf("ParseUserID(%q) = %+v", tt.in, u)
		}
		if u.String() != tt.in {
			t.Errorf("ParseUserID(%q).String() = %q", tt.in, u.String())
		}
		if u.IsCompliant() != tt.compliant {
			t.Errorf("ParseUserID(%q).IsCompliant() = %v", tt.in, u.IsCompliant())
		}
	}

	invalid := []string{
		"",
		"@",
		"alice:example.org",
		"#alice:example.org",
		"@alice",
		"@alice:",
		"@alice:exa mple.org",
		"@alice:example.org:",
		"@alice:example.org:0",
		"@a:b:c", // the first colon ends the localpart; "b:c" is no server name
		"@a\x00b:example.org",
		"@\xff:example.org",
		"@\xed\xa0\x80:example.org", // UTF-8-encoded surrogate
		pad("@", "example.org", 256),
	}
	for _, s := range invalid {
		if u, err := ParseUserID(s); err == nil {
			t.Errorf("ParseUserID(%q) = %+v, want error", s, u)
		} else if !errors.Is(err, ErrInvalidUserID) {
			t.Errorf("ParseUserID(%q): %v is not ErrInvalidUserID", s, err)
		}
	}
}

func TestValidateLocalpartForRegistration(t *testing.T) {
	for _, s := range []string{"alice", "a", "0123", "a.b_c=d-e/f+g", "_", "john.doe"} {
		if err := ValidateLocalpartForRegistration(s); err != nil {
			t.Errorf("%q: %v", s, err)
		}
	}
	for _, s := range []string{"", "Alice", "aLICE", "al ice", "a:b", "a@b", "a#b", "a*b", "日本", "a\x00", "a~b", "a!b"} {
		err := ValidateLocalpartForRegistration(s)
		if !errors.Is(err, ErrInvalidLocalpart) {
			t.Errorf("%q: got %v, want ErrInvalidLocalpart", s, err)
		}
	}
}

func TestParseRoomAlias(t *testing.T) {
	valid := []struct {
		in, localpart string
		server        ServerName
	}{
		{"#room:example.org", "room", "example.org"},
		{"#Room Name!:example.org", "Room Name!", "example.org"},
		{"#日本語:example.org:8448", "日本語", "example.org:8448"},
		{"#:example.org", "", "example.org"},
		{pad("#", "example.org", 255), strings.Repeat("a", 255-13), "example.org"},
	}
	for _, tt := range valid {
		a, err := ParseRoomAlias(tt.in)
		if err != nil {
			t.Errorf("ParseRoomAlias(%q): %v", tt.in, err)
			continue
		}
		if a.Localpart != tt.localpart || a.Server != tt.server || a.String() != tt.in {
			t.Errorf("ParseRoomAlias(%q) = %+v (%q)", tt.in, a, a.String())
		}
	}
	for _, s := range []string{"", "#room", "room:example.org", "!room:example.org", "#room:", "#room:bad_server", "#a\x00:example.org", "#\xff:example.org", pad("#", "example.org", 256)} {
		if a, err := ParseRoomAlias(s); !errors.Is(err, ErrInvalidRoomAlias) {
			t.Errorf("ParseRoomAlias(%q) = %+v, %v; want ErrInvalidRoomAlias", s, a, err)
		}
	}
}

const (
	// Event IDs from the room version 3 and 4 specifications.
	v3EventID = "$acR1l0raoZnm60CBwAVgqbZqoO/mYU81xysh1u7XcJk"
	v4EventID = "$Rqnc-F-dvnEYJTyHq_iKxU2bZ1CI92-kuZq3a5lr5Zg"
	// Valid in both alphabets.
	v3v4EventID = "$CD66HAED5npg6074c6pDtLKalHjVfYb2q4Q3LZgrW6o"
)

func TestParseRoomID(t *testing.T) {
	valid := []struct {
		in, opaque string
		server     ServerName
	}{
		{"!jEsUZKDJdhlrceRyVU:example.org", "jEsUZKDJdhlrceRyVU", "example.org"},
		{"!x:domain", "x", "domain"},
		{"!r:1.2.3.4:8448", "r", "1.2.3.4:8448"},
		{"!a b\x01日:example.org", "a b\x01日", "example.org"},
		{"!:example.org", "", "example.org"},
		{pad("!", "example.org", 255), strings.Repeat("a", 255-13), "example.org"},
		// Room version 12: the create event's ID with a '!' sigil.
		{"!" + v4EventID[1:], v4EventID[1:], ""},
		{"!" + v3v4EventID[1:], v3v4EventID[1:], ""},
	}
	for _, tt := range valid {
		r, err := ParseRoomID(tt.in)
		if err != nil {
			t.Errorf("ParseRoomID(%q): %v", tt.in, err)
			continue
		}
		if r.Opaque != tt.opaque || r.Server != tt.server || r.String() != tt.in {
			t.Errorf("ParseRoomID(%q) = %+v (%q)", tt.in, r, r.String())
		}
	}
	invalid := []string{
		"",
		"!",
		"jEsUZKDJdhlrceRyVU:example.org",
		"$jEsUZKDJdhlrceRyVU:example.org",
		"!jEsUZKDJdhlrceRyVU",       // no server and not a hash
		"!" + v3EventID[1:],         // standard alphabet: not a room version 12 ID
		"!" + v4EventID[1:] + "A",   // too long
		"!" + v4EventID[1:42],       // too short
		"!" + v4EventID[1:43] + "h", // non-zero trailing bits
		"!" + v4EventID[1:] + "=",   // padded
		"!room:",
		"!room:exa mple.org",
		"!a\x00:example.org",
		"!\xff:example.org",
		pad("!", "example.org", 256),
	}
	for _, s := range invalid {
		if r, err := ParseRoomID(s); !errors.Is(err, ErrInvalidRoomID) {
			t.Errorf("ParseRoomID(%q) = %+v, %v; want ErrInvalidRoomID", s, r, err)
		}
	}
}

func TestRoomIDCreateEvent(t *testing.T) {
	create, err := ParseEventIDFormat(v4EventID, EventIDFormatV4)
	if err != nil {
		t.Fatal(err)
	}
	room, err := RoomIDForCreateEvent(create)
	if err != nil {
		t.Fatal(err)
	}
	if want := "!" + v4EventID[1:]; room.String() != want {
		t.Errorf("room ID %q, want %q", room, want)
	}
	back, ok := room.CreateEventID()
	if !ok || back != create {
		t.Errorf("CreateEventID() = %+v, %v; want %+v", back, ok, create)
	}

	if _, ok := (RoomID{Opaque: "x", Server: "domain"}).CreateEventID(); ok {
		t.Error("CreateEventID of a room ID with a server part succeeded")
	}
	for _, e := range []EventID{
		{Opaque: "0", Server: "domain"},
		{Opaque: v3EventID[1:]},
		{Opaque: "short"},
	} {
		if r, err := RoomIDForCreateEvent(e); !errors.Is(err, ErrInvalidRoomID) {
			t.Errorf("RoomIDForCreateEvent(%+v) = %+v, %v", e, r, err)
		}
	}
}

func TestParseEventID(t *testing.T) {
	type formats struct{ v1, v3, v4 bool }
	tests := []struct {
		in     string
		ok     formats
		opaque string
		server ServerName
	}{
		{"$0:domain", formats{v1: true}, "0", "domain"},
		{"$1718029423123abcdef:example.org:8448", formats{v1: true}, "1718029423123abcdef", "example.org:8448"},
		{"$:example.org", formats{v1: true}, "", "example.org"},
		{"$" + v3EventID[1:] + ":example.org", formats{v1: true}, v3EventID[1:], "example.org"},
		{pad("$", "example.org", 255), formats{v1: true}, strings.Repeat("a", 255-13), "example.org"},
		{v3EventID, formats{v3: true}, v3EventID[1:], ""},
		{v4EventID, formats{v4: true}, v4EventID[1:], ""},
		{v3v4EventID, formats{v3: true, v4: true}, v3v4EventID[1:], ""},
		// Invalid in every format.
		{"", formats{}, "", ""},
		{"$", formats{}, "", ""},
		{"abc:example.org", formats{}, "", ""},
		{"!" + v4EventID[1:], formats{}, "", ""},
		{"$abc", formats{}, "", ""},
		{"$abc:", formats{}, "", ""},
		{"$abc:bad_server", formats{}, "", ""},
		{"$a\x00:example.org", formats{}, "", ""},
		{pad("$", "example.org", 256), formats{}, "", ""},
		{v4EventID + "A", formats{}, "", ""},
		{v4EventID[:43], formats{}, "", ""},
		{v4EventID + "=", formats{}, "", ""},
		{"$" + strings.Repeat("A", 41) + "+-", formats{}, "", ""}, // mixed alphabets
		{"$" + strings.Repeat("A", 42) + "B", formats{}, "", ""},  // trailing bits
		{"$" + strings.Repeat("A", 42) + "/", formats{}, "", ""},
		{"$" + strings.Repeat("A", 42) + "_", formats{}, "", ""},
		{"$" + strings.Repeat("A", 42) + "E", formats{v3: true, v4: true}, strings.Repeat("A", 42) + "E", ""},
		{"$" + strings.Repeat("A", 42) + "w", formats{v3: true, v4: true}, strings.Repeat("A", 42) + "w", ""},
		{"$" + strings.Repeat("A", 42) + "8", formats{v3: true, v4: true}, strings.Repeat("A", 42) + "8", ""},
	}
	for _, tt := range tests {
		for _, f := range []struct {
			format EventIDFormat
			ok     bool
		}{{EventIDFormatV1, tt.ok.v1}, {EventIDFormatV3, tt.ok.v3}, {EventIDFormatV4, tt.ok.v4}} {
			e, err := ParseEventIDFormat(tt.in, f.format)
			if !f.ok {
				if !errors.Is(err, ErrInvalidEventID) {
					t.Errorf("ParseEventIDFormat(%q, %d) = %+v, %v; want ErrInvalidEventID", tt.in, f.format, e, err)
				}
				continue
			}
			if err != nil {
				t.Errorf("ParseEventIDFormat(%q, %d): %v", tt.in, f.format, err)
				continue
			}
			if e.Opaque != tt.opaque || e.Server != tt.server || e.String() != tt.in {
				t.Errorf("ParseEventIDFormat(%q, %d) = %+v (%q)", tt.in, f.format, e, e.String())
			}
		}
		anyOK := tt.ok.v1 || tt.ok.v3 || tt.ok.v4
		e, err := ParseEventID(tt.in)
		if anyOK && (err != nil || e.String() != tt.in) {
			t.Errorf("ParseEventID(%q) = %+v, %v", tt.in, e, err)
		}
		if !anyOK && !errors.Is(err, ErrInvalidEventID) {
			t.Errorf("ParseEventID(%q) = %+v, %v; want ErrInvalidEventID", tt.in, e, err)
		}
	}
	if _, err := ParseEventIDFormat(v4EventID, 2); !errors.Is(err, ErrInvalidEventID) {
		t.Errorf("unknown format: %v", err)
	}
}

func TestParseKeyID(t *testing.T) {
	valid := []struct{ in, alg, version string }{
		{"ed25519:abc_1", "ed25519", "abc_1"},
		{"ed25519:1", "ed25519", "1"},
		{"ed25519:a_XyZw", "ed25519", "a_XyZw"},
		{"ed25519:auto", "ed25519", "auto"},
		{"ed25519:0ldK3y", "ed25519", "0ldK3y"},
		{"future_alg:v2", "future_alg", "v2"},
	}
	for _, tt := range valid {
		k, err := ParseKeyID(tt.in)
		if err != nil {
			t.Errorf("ParseKeyID(%q): %v", tt.in, err)
			continue
		}
		if k.Algorithm != tt.alg || k.Version != tt.version || k.String() != tt.in {
			t.Errorf("ParseKeyID(%q) = %+v", tt.in, k)
		}
	}
	for _, s := range []string{"", ":", "ed25519", "ed25519:", ":abc", "ed25519:abc-1", "ed25519:abc:def", "ed25519:ab/c", "ed25519:ab+c", "ed-25519:1", "ed25519:ab c", "ed25519:é"} {
		if k, err := ParseKeyID(s); !errors.Is(err, ErrInvalidKeyID) {
			t.Errorf("ParseKeyID(%q) = %+v, %v; want ErrInvalidKeyID", s, k, err)
		}
	}
}

func TestServersOf(t *testing.T) {
	got := ServersOf([]string{"@a:b.example", "@c:a.example", "@d:b.example", "@e:ours.example", "no-server"}, "ours.example")
	if len(got) != 2 || got[0] != "a.example" || got[1] != "b.example" {
		t.Fatalf("ServersOf: %v", got)
	}
	if ServerOf("@alice:example.org:8448") != "example.org:8448" || ServerOf("alice") != "" {
		t.Fatal("ServerOf")
	}
}

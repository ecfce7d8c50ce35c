package appservice

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const goodRegistration = `
id: telegram
url: http://127.0.0.1:29317/
as_token: "as-secret"
hs_token: "hs-secret"
sender_localpart: telegrambot
namespaces:
  users:
    - regex: "@_tg_.*:example.org"
      exclusive: true
    - regex: "@tgx_[0-9]+:example.org"
      exclusive: false
  aliases:
    - regex: "#_tg_.*:example.org"
      exclusive: true
  rooms: []
protocols: [telegram]
de.sorunome.msc2409.push_ephemeral: true
org.matrix.msc3202: true
some_future_key: whatever
`

func TestParseRegistration(t *testing.T) {
	r, err := ParseRegistration([]byte(goodRegistration), "example.org")
	if err != nil {
		t.Fatal(err)
	}
	if r.ID != "telegram" || r.URL != "http://127.0.0.1:29317" || r.ASToken != "as-secret" || r.HSToken != "hs-secret" ||
		r.SenderUserID != "@telegrambot:example.org" || !r.RateLimited || !r.ReceiveEphemeral ||
		len(r.Users) != 2 || len(r.Aliases) != 1 || len(r.Rooms) != 0 || !r.HasProtocol("telegram") || r.HasProtocol("irc") {
		t.Fatalf("parsed %+v", r)
	}
	for _, c := range []struct {
		user     string
		is, excl bool
	}{
		{"@_tg_123:example.org", true, true},
		{"@tgx_5:example.org", true, false},
		{"@tgx_five:example.org", false, false},
		{"@telegrambot:example.org", true, true},
		// Anchored: a namespace covers whole user IDs only.
		{"@x_tg_1:example.org", false, false},
		{"@_tg_1:example.org.evil", false, false},
		// Only local users.
		{"@_tg_1:other.org", false, false},
		{"@alice:example.org", false, false},
	} {
		if got := r.IsUser(c.user); got != c.is {
			t.Errorf("IsUser(%s) = %v, want %v", c.user, got, c.is)
		}
		if got := r.ClaimsUserExclusively(c.user); got != c.excl {
			t.Errorf("ClaimsUserExclusively(%s) = %v, want %v", c.user, got, c.excl)
		}
	}
	if m, ex := r.MatchesAlias("#_tg_chat:example.org"); !m || !ex {
		t.Error("alias namespace")
	}
	if m, _ := r.MatchesAlias("#general:example.org"); m {
		t.Error("alias outside the namespace matched")
	}

	// url: null is a service that receives nothing; rate_limited can be
	// turned off; receive_ephemeral is the stable key.
	r, err = ParseRegistration([]byte(`{id: x, url: null, as_token: a, hs_token: h, sender_localpart: xbot,
		namespaces: {}, rate_limited: false, receive_ephemeral: true}`), "example.org")
	if err != nil || r.URL != "" || r.RateLimited || !r.ReceiveEphemeral {
		t.Fatalf("minimal registration: %+v %v", r, err)
	}
}

func TestParseRegistrationErrors(t *testing.T) {
	base := map[string]string{
		"id": "x", "url": "http://127.0.0.1:1", "as_token": "a", "hs_token": "h", "sender_localpart": "xbot",
		"namespaces": "{users: [{regex: '@_x_.*', exclusive: true}]}",
	}
	order := []string{"id", "url", "as_token", "hs_token", "sender_localpart", "namespaces"}
	build := func(change map[string]string) string {
		var b strings.Builder
		for _, k := range order {
			v, ok := change[k]
			if !ok {
				v = base[k]
			}
			if v != "-" {
				b.WriteString(k + ": " + v + "\n")
			}
		}
		for k, v := range change {
			if _, inBase := base[k]; !inBase {
				b.WriteString(k + ": " + v + "\n")
			}
		}
		return b.String()
	}
	if _, err := ParseRegistration([]byte(build(nil)), "example.org"); err != nil {
		t.Fatalf("the base file is invalid: %v", err)
	}
	for _, c := range []struct {
		name   string
		file   string
		field  string
		detail string
	}{
		{"not YAML", "id: [unclosed", "", "not valid YAML"},
		{"empty", "", "", "empty"},
		{"not a mapping", "- a\n- b\n", "", "mapping"},
		{"no id", build(map[string]string{"id": "-"}), "id", "missing"},
		{"id not a string", build(map[string]string{"id": "12"}), "id", "string"},
		{"empty id", build(map[string]string{"id": `""`}), "id", "empty"},
		{"no url", build(map[string]string{"url": "-"}), "url", "null"},
		{"url not http", build(map[string]string{"url": "ftp://x"}), "url", "http"},
		{"url a list", build(map[string]string{"url": "[a]"}), "url", "string or null"},
		{"no as_token", build(map[string]string{"as_token": "-"}), "as_token", "missing"},
		{"no hs_token", build(map[string]string{"hs_token": "-"}), "hs_token", "missing"},
		{"same tokens", build(map[string]string{"hs_token": "a"}), "hs_token", "differ"},
		{"bad sender", build(map[string]string{"sender_localpart": "Bad Bot"}), "sender_localpart", ""},
		{"no namespaces", build(map[string]string{"namespaces": "-"}), "namespaces", "missing"},
		{"namespaces a list", build(map[string]string{"namespaces": "[]"}), "namespaces", "mapping"},
		{"users not a list", build(map[string]string{"namespaces": "{users: yes}"}), "namespaces.users", "list"},
		{"no regex", build(map[string]string{"namespaces": "{users: [{exclusive: true}]}"}), "namespaces.users[0].regex", "missing"},
		{"bad regex", build(map[string]string{"namespaces": "{aliases: [{regex: '#(?=x)', exclusive: true}]}"}), "namespaces.aliases[0].regex", "regular expression"},
		{"no exclusive", build(map[string]string{"namespaces": "{rooms: [{regex: '!x'}]}"}), "namespaces.rooms[0].exclusive", "missing"},
		{"exclusive not bool", build(map[string]string{"namespaces": "{users: [{regex: '@x', exclusive: maybe}]}"}), "namespaces.users[0].exclusive", "true or false"},
		{"rate_limited not bool", build(map[string]string{"rate_limited": "sometimes"}), "rate_limited", "true or false"},
		{"receive_ephemeral not bool", build(map[string]string{"receive_ephemeral": "1x"}), "receive_ephemeral", "true or false"},
		{"protocols not a list", build(map[string]string{"protocols": "irc"}), "protocols", "list"},
		{"protocol with a slash", build(map[string]string{"protocols": "[a/b]"}), "protocols[0]", "/"},
	} {
		_, err := ParseRegistration([]byte(c.file), "example.org")
		if err == nil {
			t.Errorf("%s: accepted", c.name)
			continue
		}
		msg := err.Error()
		if c.field != "" && !strings.HasPrefix(msg, c.field+": ") {
			t.Errorf("%s: %q does not name the field %s", c.name, msg, c.field)
		}
		if !strings.Contains(msg, c.detail) || strings.Contains(msg, "\n") {
			t.Errorf("%s: %q, want one line mentioning %q", c.name, msg, c.detail)
		}
	}
}

func TestLoadRegistrations(t *testing.T) {
	dir := t.TempDir()
	write := func(name, id, as, hs string) string {
		p := filepath.Join(dir, name)
		body := "id: " + id + "\nurl: null\nas_token: " + as + "\nhs_token: " + hs + "\nsender_localpart: " + id + "bot\nnamespaces: {}\n"
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	a := write("a.yaml", "a", "as1", "hs1")
	b := write("b.yaml", "b", "as2", "hs2")
	regs, err := LoadRegistrations([]string{a, b}, "example.org")
	if err != nil || len(regs) != 2 || regs[1].File != b {
		t.Fatalf("load: %v %v", regs, err)
	}
	for _, c := range []struct {
		name, file, want string
	}{
		{"same id", write("c.yaml", "a", "as3", "hs3"), "id: \"a\" is already the id of the service in " + a},
		{"same as_token", write("d.yaml", "d", "as1", "hs4"), "as_token: the same token is already the as_token of \"a\""},
		{"hs_token is another's as_token", write("e.yaml", "e", "as5", "as2"), "hs_token: the same token is already the as_token of \"b\""},
		{"missing file", filepath.Join(dir, "nope.yaml"), "no such file"},
	} {
		_, err := LoadRegistrations([]string{a, b, c.file}, "example.org")
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), c.file) {
			t.Errorf("%s: %v, want the file and %q", c.name, err, c.want)
		}
	}
}

package appservice

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/parley-chat/parley/matrix/id"
)

// Registration is one application service as its registration file (the
// YAML a bridge generates) describes it.
type Registration struct {
	// ID identifies the service; it never changes.
	ID string
	// URL is where the service listens, without a trailing slash; "" (url:
	// null in the file) means the service receives no traffic.
	URL string
	// ASToken is what the service authenticates to us with; HSToken what we
	// authenticate to it with.
	ASToken, HSToken string
	// SenderLocalpart is the service's own user (its bot); SenderUserID is
	// that user's full ID.
	SenderLocalpart, SenderUserID string
	// Users, Aliases and Rooms are the namespaces the service claims.
	Users, Aliases, Rooms []Namespace
	// RateLimited makes the service's virtual users subject to the rate
	// limits (its sender never is).
	RateLimited bool
	// Protocols are the third-party protocols the service bridges.
	Protocols []string
	// ReceiveEphemeral asks for typing, receipts and presence in
	// transactions (receive_ephemeral, or MSC2409's
	// de.sorunome.msc2409.push_ephemeral).
	ReceiveEphemeral bool
	// File is the registration file's path, for messages.
	File string

	serverName string
}

// Namespace is one regular expression of a namespace list, compiled to
// match whole IDs.
type Namespace struct {
	Regex     *regexp.Regexp
	Exclusive bool
	// Source is the regular expression as written in the file.
	Source string
}

// LoadRegistrations reads and checks the registration files listed in the
// configuration (app_service_config_files). The error is one line naming
// the file and the field. IDs and tokens must be unique across all files:
// a token shared by two services would let one act as the other.
func LoadRegistrations(paths []string, serverName string) ([]*Registration, error) {
	var regs []*Registration
	ids := map[string]*Registration{}
	tokens := map[string]string{} // token -> "the as_token of X (file)"
	for _, path := range paths {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("appservice: registration file %s: %w", path, err)
		}
		reg, err := ParseRegistration(data, serverName)
		if err != nil {
			return nil, fmt.Errorf("appservice: registration file %s: %w", path, err)
		}
		reg.File = path
		if other, ok := ids[reg.ID]; ok {
			return nil, fmt.Errorf("appservice: registration file %s: id: %q is already the id of the service in %s", path, reg.ID, other.File)
		}
		ids[reg.ID] = reg
		for _, t := range []struct{ field, token string }{{"as_token", reg.ASToken}, {"hs_token", reg.HSToken}} {
			if owner, ok := tokens[t.token]; ok {
				return nil, fmt.Errorf("appservice: registration file %s: %s: the same token is already %s; every token must be unique", path, t.field, owner)
			}
			tokens[t.token] = fmt.Sprintf("the %s of %q (%s)", t.field, reg.ID, path)
		}
		regs = append(regs, reg)
	}
	return regs, nil
}

// fieldError is a problem with one field of a registration file.
type fieldError struct {
	field, msg string
}

func (e *fieldError) Error() string { return e.field + ": " + e.msg }

func fieldErr(field, format string, args ...any) error {
	return &fieldError{field: field, msg: fmt.Sprintf(format, args...)}
}

// ParseRegistration parses one registration file's content for a server
// named serverName. The error names the offending field.
func ParseRegistration(data []byte, serverName string) (*Registration, error) {
	var doc yaml.Node
	if err := yaml.NewDecoder(bytes.NewReader(data)).Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("the file is empty")
		}
		return nil, fmt.Errorf("not valid YAML: %w", err)
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("must be a mapping of keys such as id, url, as_token (line %d)", root.Line)
	}
	fields := mapping(root)
	reg := &Registration{RateLimited: true, serverName: serverName}
	var err error
	if reg.ID, err = requiredString(fields, "id"); err != nil {
		return nil, err
	}
	urlNode, ok := fields["url"]
	if !ok {
		return nil, fieldErr("url", "missing (write url: null for a service that receives no traffic)")
	}
	if urlNode.Tag != "!!null" {
		if urlNode.Kind != yaml.ScalarNode || urlNode.Tag != "!!str" {
			return nil, fieldErr("url", "must be a string or null (line %d)", urlNode.Line)
		}
		u, err := url.Parse(urlNode.Value)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
			return nil, fieldErr("url", "must be an http:// or https:// URL such as http://127.0.0.1:29318, got %q (line %d)", urlNode.Value, urlNode.Line)
		}
		reg.URL = strings.TrimRight(urlNode.Value, "/")
	}
	if reg.ASToken, err = requiredString(fields, "as_token"); err != nil {
		return nil, err
	}
	if reg.HSToken, err = requiredString(fields, "hs_token"); err != nil {
		return nil, err
	}
	if reg.ASToken == reg.HSToken {
		return nil, fieldErr("hs_token", "must differ from as_token")
	}
	if reg.SenderLocalpart, err = requiredString(fields, "sender_localpart"); err != nil {
		return nil, err
	}
	if err := id.ValidateLocalpartForRegistration(reg.SenderLocalpart); err != nil {
		return nil, fieldErr("sender_localpart", "%v", err)
	}
	reg.SenderUserID = "@" + reg.SenderLocalpart + ":" + serverName
	if _, err := id.ParseUserID(reg.SenderUserID); err != nil {
		return nil, fieldErr("sender_localpart", "%v", err)
	}
	ns, ok := fields["namespaces"]
	if !ok {
		return nil, fieldErr("namespaces", "missing (it may be {} for a service that claims nothing)")
	}
	if ns.Tag != "!!null" {
		if ns.Kind != yaml.MappingNode {
			return nil, fieldErr("namespaces", "must be a mapping with users, aliases and rooms (line %d)", ns.Line)
		}
		nsFields := mapping(ns)
		for _, l := range []struct {
			key  string
			list *[]Namespace
		}{{"users", &reg.Users}, {"aliases", &reg.Aliases}, {"rooms", &reg.Rooms}} {
			if *l.list, err = namespaceList(nsFields[l.key], "namespaces."+l.key); err != nil {
				return nil, err
			}
		}
	}
	if reg.RateLimited, err = optionalBool(fields, "rate_limited", true); err != nil {
		return nil, err
	}
	for _, key := range []string{"receive_ephemeral", "de.sorunome.msc2409.push_ephemeral"} {
		b, err := optionalBool(fields, key, false)
		if err != nil {
			return nil, err
		}
		reg.ReceiveEphemeral = reg.ReceiveEphemeral || b
	}
	// Device masquerading (MSC3202, now in the spec) is allowed for every
	// service; the flags are checked only for their type.
	for _, key := range []string{"org.matrix.msc3202", "io.element.msc4190"} {
		if _, err := optionalBool(fields, key, false); err != nil {
			return nil, err
		}
	}
	if p, ok := fields["protocols"]; ok && p.Tag != "!!null" {
		if p.Kind != yaml.SequenceNode {
			return nil, fieldErr("protocols", "must be a list of protocol names (line %d)", p.Line)
		}
		for i, item := range p.Content {
			if item.Kind != yaml.ScalarNode || item.Tag != "!!str" || item.Value == "" {
				return nil, fieldErr(fmt.Sprintf("protocols[%d]", i), "must be a protocol name (line %d)", item.Line)
			}
			if strings.ContainsAny(item.Value, "/?#") {
				return nil, fieldErr(fmt.Sprintf("protocols[%d]", i), "must not contain / ? or # (line %d)", item.Line)
			}
			reg.Protocols = append(reg.Protocols, item.Value)
		}
	}
	return reg, nil
}

// mapping indexes a mapping node's values by key.
func mapping(n *yaml.Node) map[string]*yaml.Node {
	m := make(map[string]*yaml.Node, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		m[n.Content[i].Value] = n.Content[i+1]
	}
	return m
}

func requiredString(fields map[string]*yaml.Node, key string) (string, error) {
	n, ok := fields[key]
	if !ok || n.Tag == "!!null" {
		return "", fieldErr(key, "missing")
	}
	if n.Kind != yaml.ScalarNode || n.Tag != "!!str" {
		return "", fieldErr(key, "must be a string (quote it if it looks like a number; line %d)", n.Line)
	}
	if n.Value == "" {
		return "", fieldErr(key, "must not be empty (line %d)", n.Line)
	}
	return n.Value, nil
}

func optionalBool(fields map[string]*yaml.Node, key string, def bool) (bool, error) {
	n, ok := fields[key]
	if !ok || n.Tag == "!!null" {
		return def, nil
	}
	if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" {
		return false, fieldErr(key, "must be true or false (line %d)", n.Line)
	}
	var b bool
	if err := n.Decode(&b); err != nil {
		return false, fieldErr(key, "must be true or false (line %d)", n.Line)
	}
	return b, nil
}

// namespaceList parses a list of {regex, exclusive}. Each regular
// expression is anchored at both ends: a namespace covers the IDs it
// matches whole, so "@_irc_.*" does not also claim "@bob_irc_x:server"
// (Go's regexp finds matches anywhere unless anchored).
func namespaceList(n *yaml.Node, field string) ([]Namespace, error) {
	if n == nil || n.Tag == "!!null" {
		return nil, nil
	}
	if n.Kind != yaml.SequenceNode {
		return nil, fieldErr(field, "must be a list of {regex, exclusive} (line %d)", n.Line)
	}
	var out []Namespace
	for i, item := range n.Content {
		f := fmt.Sprintf("%s[%d]", field, i)
		if item.Kind != yaml.MappingNode {
			return nil, fieldErr(f, "must be a mapping with regex and exclusive (line %d)", item.Line)
		}
		m := mapping(item)
		src, err := requiredString(m, "regex")
		if err != nil {
			return nil, fieldErr(f+".regex", "%s", err.(*fieldError).msg)
		}
		re, err := regexp.Compile(`^(?:` + src + `)$`)
		if err != nil {
			return nil, fieldErr(f+".regex", "not a valid regular expression (RE2 syntax): %v (line %d)", err, m["regex"].Line)
		}
		ex, ok := m["exclusive"]
		if !ok {
			return nil, fieldErr(f+".exclusive", "missing (true or false)")
		}
		var exclusive bool
		if ex.Kind != yaml.ScalarNode || ex.Tag != "!!bool" || ex.Decode(&exclusive) != nil {
			return nil, fieldErr(f+".exclusive", "must be true or false (line %d)", ex.Line)
		}
		out = append(out, Namespace{Regex: re, Exclusive: exclusive, Source: src})
	}
	return out, nil
}

// matchAny reports whether s is in one of the namespaces, and whether one
// that matches is exclusive.
func matchAny(list []Namespace, s string) (match, exclusive bool) {
	for _, ns := range list {
		if ns.Regex.MatchString(s) {
			match = true
			if ns.Exclusive {
				return true, true
			}
		}
	}
	return match, false
}

// isLocal reports whether userID belongs to this server: user namespaces
// only ever cover local users.
func (r *Registration) isLocal(userID string) bool {
	return strings.HasSuffix(userID, ":"+r.serverName) && strings.HasPrefix(userID, "@")
}

// IsUser reports whether the service may act as userID: its sender or a
// local user in one of its user namespaces.
func (r *Registration) IsUser(userID string) bool {
	if userID == r.SenderUserID {
		return true
	}
	if !r.isLocal(userID) {
		return false
	}
	m, _ := matchAny(r.Users, userID)
	return m
}

// ClaimsUserExclusively reports whether userID is in one of the service's
// exclusive user namespaces (or is its sender).
func (r *Registration) ClaimsUserExclusively(userID string) bool {
	if userID == r.SenderUserID {
		return true
	}
	if !r.isLocal(userID) {
		return false
	}
	_, ex := matchAny(r.Users, userID)
	return ex
}

// MatchesAlias reports whether alias is in one of the alias namespaces,
// and whether exclusively.
func (r *Registration) MatchesAlias(alias string) (match, exclusive bool) {
	return matchAny(r.Aliases, alias)
}

// MatchesRoom reports whether roomID is in one of the room namespaces.
func (r *Registration) MatchesRoom(roomID string) bool {
	m, _ := matchAny(r.Rooms, roomID)
	return m
}

// HasProtocol reports whether the service declared the protocol.
func (r *Registration) HasProtocol(protocol string) bool {
	for _, p := range r.Protocols {
		if p == protocol {
			return true
		}
	}
	return false
}

// tokenKey is how as_tokens are looked up: by hash, so that a lookup's
// timing says nothing about how much of a guessed token was right.
func tokenKey(token string) [32]byte { return sha256.Sum256([]byte(token)) }

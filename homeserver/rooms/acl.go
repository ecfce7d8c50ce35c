package rooms

import (
	"context"
	"encoding/json"
	"net/netip"
	"strings"

	"github.com/parley-chat/parley/matrix/id"
)

// ServerAllowed applies the room's server ACL (m.room.server_acl) to a
// server: PDUs, EDUs and room requests from a denied server are refused.
// A room without an ACL allows every server.
func (e *Engine) ServerAllowed(ctx context.Context, roomID, server string) bool {
	ev, err := e.CurrentStateEvent(ctx, roomID, "m.room.server_acl", "")
	if err != nil || ev == nil {
		return true
	}
	var acl struct {
		Allow           []string `json:"allow"`
		Deny            []string `json:"deny"`
		AllowIPLiterals *bool    `json:"allow_ip_literals"`
	}
	if json.Unmarshal(ev.Content(), &acl) != nil {
		return true // an unreadable ACL is no ACL
	}
	return aclAllows(acl.Allow, acl.Deny, acl.AllowIPLiterals == nil || *acl.AllowIPLiterals, server)
}

// aclAllows is the spec's algorithm: the port is ignored; IP literals are
// denied when the ACL says so; a matching deny entry denies; a matching
// allow entry allows; anything else is denied.
func aclAllows(allow, deny []string, ipLiterals bool, server string) bool {
	host := server
	if sn, err := id.ParseServerName(server); err == nil {
		host, _, _ = sn.HostPort()
	}
	if _, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil && !ipLiterals {
		return false
	}
	for _, p := range deny {
		if globMatch(p, host) {
			return false
		}
	}
	for _, p := range allow {
		if globMatch(p, host) {
			return true
		}
	}
	return false
}

// globMatch matches s against a pattern where * is any run of characters
// and ? any one character, case-insensitively as server names compare.
func globMatch(pattern, s string) bool {
	p, str := strings.ToLower(pattern), strings.ToLower(s)
	// Iterative matching with backtracking to the last star.
	pi, si, star, mark := 0, 0, -1, 0
	for si < len(str) {
		switch {
		case pi < len(p) && (p[pi] == '?' || p[pi] == str[si]):
			pi++
			si++
		case pi < len(p) && p[pi] == '*':
			star, mark = pi, si
			pi++
		case star >= 0:
			pi = star + 1
			mark++
			si = mark
		default:
			return false
		}
	}
	for pi < len(p) && p[pi] == '*' {
		pi++
	}
	return pi == len(p)
}

// Package policy decides which remote servers this server federates with:
// the administrator's allow and deny lists of server names, and the rule
// that federation never reaches private, loopback or link-local addresses
// unless the administrator allows it (so that a remote server name cannot
// turn this server into a probe of its own network).
package policy

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/parley-chat/parley/matrix/id"
)

// ErrDenied is returned (wrapped) for a server the allow or deny list refuses.
var ErrDenied = errors.New("server denied by federation policy")

// Servers is an allow list and a deny list of server name patterns. A
// pattern is a server name ("example.org", "example.org:8448"), a wildcard
// for every subdomain ("*.example.org", not matching example.org itself), or
// "*" for every server. A pattern without a port matches the host with any
// port. Hosts compare case-insensitively: DNS does, so a case-sensitive deny
// list could be dodged by writing the name in capitals.
type Servers struct {
	allow, deny []pattern
}

type pattern struct {
	// host is lower case, IPv6 literals without brackets; "*" is every
	// host and a leading "*." every subdomain.
	host string
	// port is empty for any port.
	port string
}

// NewServers compiles the lists. An empty allow list allows every server
// the deny list does not name; the deny list wins over the allow list.
func NewServers(allow, deny []string) (*Servers, error) {
	s := &Servers{}
	for _, l := range []struct {
		name string
		in   []string
		out  *[]pattern
	}{{"allow", allow, &s.allow}, {"deny", deny, &s.deny}} {
		for _, p := range l.in {
			pat, err := parsePattern(p)
			if err != nil {
				return nil, fmt.Errorf("%s list: %w", l.name, err)
			}
			*l.out = append(*l.out, pat)
		}
	}
	return s, nil
}

// ValidatePattern checks one allow or deny list entry, for configuration
// validation.
func ValidatePattern(p string) error {
	_, err := parsePattern(p)
	return err
}

func parsePattern(p string) (pattern, error) {
	if p == "*" {
		return pattern{host: "*"}, nil
	}
	name := p
	wildcard := strings.HasPrefix(p, "*.")
	if wildcard {
		name = p[2:]
	}
	sn, err := id.ParseServerName(name)
	if err != nil {
		return pattern{}, fmt.Errorf("pattern %q: want a server name, *.domain or *: %w", p, err)
	}
	if wildcard && sn.IsIPLiteral() {
		return pattern{}, fmt.Errorf("pattern %q: a wildcard needs a DNS name", p)
	}
	host, port, hasPort := sn.HostPort()
	pat := pattern{host: strings.ToLower(host)}
	if wildcard {
		pat.host = "*." + pat.host
	}
	if hasPort {
		pat.port = fmt.Sprint(port)
	}
	return pat, nil
}

func (p pattern) matches(host, port string) bool {
	if p.port != "" && p.port != port {
		return false
	}
	switch {
	case p.host == "*":
		return true
	case strings.HasPrefix(p.host, "*."):
		return strings.HasSuffix(host, p.host[1:])
	default:
		return p.host == host
	}
}

// Allowed reports whether federation with serverName is allowed. A nil
// *Servers allows everything. An invalid server name is never allowed.
func (s *Servers) Allowed(serverName string) bool {
	if s == nil {
		return true
	}
	sn, err := id.ParseServerName(serverName)
	if err != nil {
		return false
	}
	h, p, hasPort := sn.HostPort()
	host := strings.ToLower(strings.TrimSuffix(h, "."))
	port := ""
	if hasPort {
		port = fmt.Sprint(p)
	}
	for _, d := range s.deny {
		if d.matches(host, port) {
			return false
		}
	}
	if len(s.allow) == 0 {
		return true
	}
	for _, a := range s.allow {
		if a.matches(host, port) {
			return true
		}
	}
	return false
}

// Check returns an error wrapping ErrDenied when serverName is not allowed.
func (s *Servers) Check(serverName string) error {
	if !s.Allowed(serverName) {
		return fmt.Errorf("%w: %s", ErrDenied, serverName)
	}
	return nil
}

// nonPublic are the IPv4 and IPv6 ranges that are not the public internet
// and that net/netip's predicates do not already cover.
var nonPublic = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),       // "this network"
	netip.MustParsePrefix("100.64.0.0/10"),   // carrier-grade NAT
	netip.MustParsePrefix("192.0.0.0/24"),    // IETF protocol assignments
	netip.MustParsePrefix("192.0.2.0/24"),    // documentation
	netip.MustParsePrefix("198.18.0.0/15"),   // benchmarking
	netip.MustParsePrefix("198.51.100.0/24"), // documentation
	netip.MustParsePrefix("203.0.113.0/24"),  // documentation
	netip.MustParsePrefix("240.0.0.0/4"),     // reserved, and the broadcast address
	netip.MustParsePrefix("100::/64"),        // discard
	netip.MustParsePrefix("2001:db8::/32"),   // documentation
	netip.MustParsePrefix("64:ff9b:1::/48"),  // local-use NAT64
}

// IsPrivate reports whether a connection to addr would reach something
// other than the public internet: loopback, private (RFC 1918, ULA),
// link-local, multicast, unspecified, carrier-grade NAT and reserved or
// documentation ranges. IPv4-mapped IPv6 addresses are judged by their IPv4
// address, since that is where a connection goes.
func IsPrivate(addr netip.Addr) bool {
	addr = addr.Unmap()
	if !addr.IsValid() || addr.IsLoopback() || addr.IsPrivate() || addr.IsLinkLocalUnicast() ||
		addr.IsLinkLocalMulticast() || addr.IsInterfaceLocalMulticast() || addr.IsMulticast() || addr.IsUnspecified() {
		return true
	}
	// NAT64 (64:ff9b::/96) embeds an IPv4 address: judge that one.
	if nat64 := netip.MustParsePrefix("64:ff9b::/96"); nat64.Contains(addr) {
		b := addr.As16()
		return IsPrivate(netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]}))
	}
	for _, p := range nonPublic {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

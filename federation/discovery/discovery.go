// Package discovery finds where a Matrix server name is served, following
// "Resolving server names" in the server-server spec (IP literals, explicit
// ports, /.well-known/matrix/server delegation, SRV records, port 8448),
// and dials it over TLS with the certificate checked against the right name
// and the federation policy applied to every address before connecting.
package discovery

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/parley-chat/parley/federation/policy"
	"github.com/parley-chat/parley/matrix/id"
)

// DefaultPort is the federation port used when nothing names another.
const DefaultPort = 8448

// ErrPrivateAddress is returned (wrapped) when a destination resolves only
// to addresses the policy forbids (loopback, private, link-local...).
var ErrPrivateAddress = errors.New("destination resolves to a non-public address")

// DNS is the part of *net.Resolver that discovery uses, so that tests can
// answer SRV and address queries without real DNS. LookupSRV must return
// records in the order to try them (RFC 2782 priority and weight), as
// *net.Resolver does, and an error for which *net.DNSError.IsNotFound is
// true when no record exists.
type DNS interface {
	LookupSRV(ctx context.Context, service, proto, name string) (cname string, addrs []*net.SRV, err error)
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Config configures a Resolver.
type Config struct {
	// DNS answers SRV and address lookups; nil means net.DefaultResolver.
	DNS DNS
	// StaticHosts maps server names to the host:port serving them,
	// overriding every other discovery step, for closed networks and tests.
	// The certificate must still be valid for the server name's hostname.
	// Static destinations are explicit, so the private-address rule does not
	// apply to them.
	StaticHosts map[string]string
	// AllowPrivateAddresses allows connecting to loopback, private and
	// link-local addresses found through DNS or .well-known.
	AllowPrivateAddresses bool
	// RootCAs verifies remote certificates; nil means the system roots.
	RootCAs *x509.CertPool
	// WellKnownPort is the HTTPS port .well-known/matrix/server is fetched
	// from; 0 means 443. Tests point it at a local server.
	WellKnownPort int
	// DialTimeout bounds connecting and the TLS handshake to one address;
	// 0 means 10 seconds.
	DialTimeout time.Duration
	// WellKnownTimeout bounds one .well-known request including
	// redirects; 0 means 10 seconds.
	WellKnownTimeout time.Duration
	// Now is the clock for cache expiry; nil means time.Now.
	Now func() time.Time
	Log logrus.FieldLogger
}

// Target is one place to connect to: a DNS name or IP address, and a port.
type Target struct {
	Host string
	Port int
}

func (t Target) String() string { return net.JoinHostPort(t.Host, strconv.Itoa(t.Port)) }

// Destination is a resolved server name: everything about a request to it
// except the addresses, which Targets and Dial find at connection time so
// that DNS answers are never older than the connection.
type Destination struct {
	// ServerName is the server name requests are addressed and signed to.
	ServerName string
	// HostHeader is the Host header requests carry.
	HostHeader string
	// TLSName is the name (DNS name or IP address) the certificate must be
	// valid for; it is also sent as SNI unless it is an IP address.
	TLSName string
	// Host and Port are where to connect. A Port of 0 means the port is not
	// known yet: SRV records of Host decide, falling back to Host:8448.
	Host string
	Port int
	// Static is set for destinations from Config.StaticHosts.
	Static bool
}

// Resolver resolves and dials server names. It is safe for concurrent use.
type Resolver struct {
	cfg    Config
	static map[string]Target
	wk     *wellKnownCache
}

// New builds a resolver, checking the static hosts.
func New(cfg Config) (*Resolver, error) {
	if cfg.DNS == nil {
		cfg.DNS = net.DefaultResolver
	}
	if cfg.WellKnownPort == 0 {
		cfg.WellKnownPort = 443
	}
	if cfg.DialTimeout == 0 {
		cfg.DialTimeout = 10 * time.Second
	}
	if cfg.WellKnownTimeout == 0 {
		cfg.WellKnownTimeout = 10 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = logrus.StandardLogger()
	}
	r := &Resolver{cfg: cfg, static: map[string]Target{}}
	for name, hostport := range cfg.StaticHosts {
		if _, err := id.ParseServerName(name); err != nil {
			return nil, fmt.Errorf("discovery: static host: %w", err)
		}
		host, portStr, err := net.SplitHostPort(hostport)
		port, perr := strconv.Atoi(portStr)
		if err != nil || perr != nil || port < 1 || port > 65535 || host == "" {
			return nil, fmt.Errorf("discovery: static host for %s: want host:port, got %q", name, hostport)
		}
		r.static[name] = Target{Host: host, Port: port}
	}
	r.wk = newWellKnownCache(r)
	return r, nil
}

// Resolve applies the spec's steps up to and including .well-known
// delegation (whose answers are cached); SRV and address lookups happen in
// Targets.
func (r *Resolver) Resolve(ctx context.Context, serverName string) (Destination, error) {
	sn, err := id.ParseServerName(serverName)
	if err != nil {
		return Destination{}, fmt.Errorf("discovery: %w", err)
	}
	host, port, hasPort := sn.HostPort()
	if t, ok := r.static[serverName]; ok {
		return Destination{ServerName: serverName, HostHeader: serverName, TLSName: host, Host: t.Host, Port: t.Port, Static: true}, nil
	}
	// Steps 1 and 2: an IP literal or an explicit port is used as it is.
	if sn.IsIPLiteral() || hasPort {
		if !hasPort {
			port = DefaultPort
		}
		return Destination{ServerName: serverName, HostHeader: serverName, TLSName: host, Host: host, Port: port}, nil
	}
	// Step 3: .well-known delegation.
	if delegated, ok := r.wk.lookup(ctx, host); ok {
		dn := id.ServerName(delegated)
		dhost, dport, dhasPort := dn.HostPort()
		d := Destination{ServerName: serverName, HostHeader: delegated, TLSName: dhost, Host: dhost}
		switch {
		case dn.IsIPLiteral() && dhasPort: // 3.1
			d.Port = dport
		case dn.IsIPLiteral():
			d.Port = DefaultPort
		case dhasPort: // 3.2
			d.Port = dport
		default: // 3.3 to 3.5: SRV of the delegated hostname, in Targets
		}
		return d, nil
	}
	// Steps 4 to 6: SRV of the hostname, in Targets.
	return Destination{ServerName: serverName, HostHeader: serverName, TLSName: host, Host: host}, nil
}

// Targets lists where to connect for d, in order: its host and port when
// known, else the targets of the _matrix-fed._tcp SRV record, else those of
// the deprecated _matrix._tcp record, else the host on port 8448.
func (r *Resolver) Targets(ctx context.Context, d Destination) ([]Target, error) {
	if d.Port != 0 {
		return []Target{{Host: d.Host, Port: d.Port}}, nil
	}
	for _, service := range []string{"matrix-fed", "matrix"} {
		_, srvs, err := r.cfg.DNS.LookupSRV(ctx, service, "tcp", d.Host)
		var dnsErr *net.DNSError
		if errors.As(err, &dnsErr) && dnsErr.IsNotFound || err == nil && len(srvs) == 0 {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("discovery: SRV _%s._tcp.%s: %w", service, d.Host, err)
		}
		var targets []Target
		for _, s := range srvs {
			if s.Target == "." || s.Target == "" {
				// RFC 2782: the service is decidedly not available.
				return nil, fmt.Errorf("discovery: SRV _%s._tcp.%s says the service is not offered", service, d.Host)
			}
			targets = append(targets, Target{Host: s.Target, Port: int(s.Port)})
		}
		return targets, nil
	}
	return []Target{{Host: d.Host, Port: DefaultPort}}, nil
}

// Dial connects to d: it resolves the targets, refuses non-public
// addresses unless allowed or d is static, and returns the first TLS
// connection whose certificate is valid for d.TLSName.
func (r *Resolver) Dial(ctx context.Context, d Destination) (*tls.Conn, error) {
	targets, err := r.Targets(ctx, d)
	if err != nil {
		return nil, err
	}
	return r.DialTargets(ctx, targets, d.TLSName, d.Static || r.cfg.AllowPrivateAddresses)
}

// DialTargets tries each target's addresses in turn and returns the first
// TLS connection whose certificate verifies for tlsName. Addresses the
// private-address rule forbids are never connected to, unless allowPrivate.
func (r *Resolver) DialTargets(ctx context.Context, targets []Target, tlsName string, allowPrivate bool) (*tls.Conn, error) {
	var errs []error
	for _, t := range targets {
		var addrs []netip.Addr
		if a, err := netip.ParseAddr(t.Host); err == nil {
			addrs = []netip.Addr{a}
		} else {
			addrs, err = r.cfg.DNS.LookupNetIP(ctx, "ip", t.Host)
			if err != nil {
				errs = append(errs, fmt.Errorf("resolving %s: %w", t.Host, err))
				continue
			}
		}
		for _, a := range addrs {
			if !allowPrivate && policy.IsPrivate(a) {
				errs = append(errs, fmt.Errorf("%w: %s is %s", ErrPrivateAddress, t.Host, a))
				continue
			}
			conn, err := r.dialOne(ctx, netip.AddrPortFrom(a.Unmap(), uint16(t.Port)), tlsName)
			if err == nil {
				return conn, nil
			}
			errs = append(errs, err)
		}
	}
	if len(errs) == 0 {
		return nil, errors.New("discovery: no address to connect to")
	}
	return nil, fmt.Errorf("discovery: cannot connect: %w", errors.Join(errs...))
}

func (r *Resolver) dialOne(ctx context.Context, addr netip.AddrPort, tlsName string) (*tls.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.DialTimeout)
	defer cancel()
	var d net.Dialer
	raw, err := d.DialContext(ctx, "tcp", addr.String())
	if err != nil {
		return nil, err
	}
	conn := tls.Client(raw, r.TLSConfig(tlsName))
	if err := conn.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, fmt.Errorf("TLS with %s (for %s): %w", addr, tlsName, err)
	}
	return conn, nil
}

// TLSConfig is the client TLS configuration for a server whose certificate
// must be valid for name. crypto/tls sends no SNI when name is an IP
// address, as the spec asks, and checks IP names against the certificate's
// IP addresses.
func (r *Resolver) TLSConfig(name string) *tls.Config {
	return &tls.Config{
		ServerName: name,
		RootCAs:    r.cfg.RootCAs,
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"h2", "http/1.1"},
	}
}

// inflight deduplicates concurrent work per key.
type inflight[T any] struct {
	mu    sync.Mutex
	calls map[string]*call[T]
}

type call[T any] struct {
	done chan struct{}
	val  T
}

// do runs fn once for concurrent callers with the same key; callers whose
// context ends first stop waiting.
func (f *inflight[T]) do(ctx context.Context, key string, fn func() T) (T, error) {
	f.mu.Lock()
	if f.calls == nil {
		f.calls = map[string]*call[T]{}
	}
	c, ok := f.calls[key]
	if !ok {
		c = &call[T]{done: make(chan struct{})}
		f.calls[key] = c
		f.mu.Unlock()
		go func() {
			c.val = fn()
			f.mu.Lock()
			delete(f.calls, key)
			f.mu.Unlock()
			close(c.done)
		}()
	} else {
		f.mu.Unlock()
	}
	select {
	case <-c.done:
		return c.val, nil
	case <-ctx.Done():
		var zero T
		return zero, ctx.Err()
	}
}

package hstest

import (
	"net"
	"path/filepath"
	"testing"

	"github.com/parley-chat/parley/homeserver"
	"github.com/parley-chat/parley/homeserver/config"
	"github.com/parley-chat/parley/homeserver/keys"
)

// Network is a set of test servers that federate with each other over
// HTTPS on loopback: each gets a certificate for its name from a test CA
// that all of them trust, and reaches the others through static hosts.
//
//	n := hstest.NewNetwork(t, "hs1.test", "hs2.test")
//	hs1 := n.Start(t, "hs1.test", nil)
//	hs2 := n.Start(t, "hs2.test", nil)
type Network struct {
	// CACert and CAKey are the test CA's files.
	CACert, CAKey string
	// Addrs maps server names to their federation listeners' addresses,
	// chosen before any server starts so that each can name the others.
	Addrs map[string]string
	// BeforeRun, when set, is passed to every server started (see
	// Options.BeforeRun).
	BeforeRun func(*homeserver.Server)
}

// NewNetwork creates the CA and picks an address for each server name.
func NewNetwork(t testing.TB, names ...string) *Network {
	t.Helper()
	dir := t.TempDir()
	n := &Network{CACert: filepath.Join(dir, "ca.crt"), CAKey: filepath.Join(dir, "ca.key"), Addrs: map[string]string{}}
	if err := keys.CreateCA(n.CACert, n.CAKey, "Parley federation test CA"); err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		n.Addrs[name] = FreeAddr(t)
	}
	return n
}

// Start starts the server called name with its certificate from the test
// CA, trusting it, and static hosts for the network's other servers;
// configure, when set, may change anything else (c.Database for a
// PostgreSQL test, c.Federation.StaticHosts for extra servers...).
func (n *Network) Start(t testing.TB, name string, configure func(*config.Config)) *Server {
	t.Helper()
	return Start(t, Options{
		ServerName: name,
		Configure: func(c *config.Config) {
			c.ListenFederation = n.Addrs[name]
			c.TLS.CACert, c.TLS.CAKey = n.CACert, n.CAKey
			c.Federation.CAFiles = []string{n.CACert}
			c.Federation.StaticHosts = map[string]string{}
			for other, addr := range n.Addrs {
				if other != name {
					c.Federation.StaticHosts[other] = addr
				}
			}
			if configure != nil {
				configure(c)
			}
		},
		BeforeRun: n.BeforeRun,
	})
}

// FreeAddr returns a loopback address nothing listens on (at the moment),
// for servers that must know each other's address before starting, or as
// the address of a server that is down.
func FreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

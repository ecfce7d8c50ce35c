package hstest

import (
	"fmt"
	"math/rand/v2"
	"net"
	"path/filepath"
	"sync"
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
//
// The port is taken below the kernel's ephemeral range (32768 and up on
// Linux), where the outgoing connections of every test running meanwhile
// take theirs: a port from that range, free when asked, was now and then
// taken by some connection before the server bound it.
func FreeAddr(t testing.TB) string {
	t.Helper()
	for range 100 {
		port := 10000 + rand.IntN(22000)
		if !claimPort(port) {
			continue
		}
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue
		}
		ln.Close()
		return ln.Addr().String()
	}
	t.Fatal("no free loopback port")
	return ""
}

// claimed are the ports this process handed out, never handed out again.
var claimed sync.Map

func claimPort(port int) bool {
	_, taken := claimed.LoadOrStore(port, true)
	return !taken
}

package keys

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestIssueFromCA(t *testing.T) {
	dir := t.TempDir()
	caCert, caKey := filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key")
	if err := CreateCA(caCert, caKey, "Test CA"); err != nil {
		t.Fatal(err)
	}
	if err := CreateCA(caCert, caKey, "Test CA"); err == nil {
		t.Fatal("CreateCA overwrote an existing CA")
	}
	cert, key := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	tc, err := IssueFromCA(caCert, caKey, cert, key, "hs1.test:8448")
	if err != nil {
		t.Fatal(err)
	}
	first, _ := os.ReadFile(cert)

	// A TLS client trusting only the CA accepts the certificate for the
	// server name's host and nothing else.
	pool, err := LoadCertPool([]string{caCert})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{tc}})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	for name, ok := range map[string]bool{"hs1.test": true, "hs2.test": false} {
		conn, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{ServerName: name, RootCAs: pool})
		if ok != (err == nil) {
			t.Errorf("dial as %s: %v", name, err)
		}
		if err == nil {
			conn.Close()
		}
	}

	// A second start keeps the certificate.
	if _, err := IssueFromCA(caCert, caKey, cert, key, "hs1.test:8448"); err != nil {
		t.Fatal(err)
	}
	if again, _ := os.ReadFile(cert); !bytes.Equal(first, again) {
		t.Fatal("a current certificate was reissued")
	}
	// A new server name gets a new certificate.
	tc2, err := IssueFromCA(caCert, caKey, cert, key, "[::1]:8448")
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(tc2.Certificate[0])
	if len(leaf.IPAddresses) != 1 || !leaf.IPAddresses[0].Equal(net.ParseIP("::1")) {
		t.Fatalf("IP certificate: %v %v", leaf.IPAddresses, leaf.DNSNames)
	}
	// Another CA replaces it too.
	ca2Cert, ca2Key := filepath.Join(dir, "ca2.crt"), filepath.Join(dir, "ca2.key")
	if err := CreateCA(ca2Cert, ca2Key, "Other CA"); err != nil {
		t.Fatal(err)
	}
	tc3, err := IssueFromCA(ca2Cert, ca2Key, cert, key, "[::1]:8448")
	if err != nil {
		t.Fatal(err)
	}
	if leaf, _ := x509.ParseCertificate(tc3.Certificate[0]); leaf.Issuer.CommonName != "Other CA" {
		t.Fatalf("issuer %s", leaf.Issuer)
	}

	// Mismatched or missing CA files are clear errors naming the key.
	if _, err := IssueFromCA(caCert, ca2Key, cert, key, "hs1.test"); err == nil || !strings.Contains(err.Error(), "tls.ca_key") {
		t.Fatalf("mismatched key: %v", err)
	}
	if _, err := IssueFromCA(filepath.Join(dir, "none"), caKey, cert, key, "hs1.test"); err == nil || !strings.Contains(err.Error(), "tls.ca_cert") {
		t.Fatalf("missing CA: %v", err)
	}
	if _, err := IssueFromCA(cert, key, cert, key, "hs1.test"); err == nil || !strings.Contains(err.Error(), "not a CA") {
		t.Fatalf("leaf as CA: %v", err)
	}
	if _, err := LoadCertPool([]string{key}); err == nil {
		t.Fatal("a key file was accepted as a CA file")
	}
}

func TestLoadOrCreateTLS(t *testing.T) {
	for name, want := range map[string]string{"hs1.test:8448": "hs1.test", "[::1]:8448": "::1"} {
		dir := t.TempDir()
		cert, key := filepath.Join(dir, "tls", "tls.crt"), filepath.Join(dir, "tls", "tls.key")
		tc, err := LoadOrCreateTLS(cert, key, name)
		if err != nil {
			t.Fatal(err)
		}
		leaf, err := x509.ParseCertificate(tc.Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		if err := leaf.VerifyHostname(want); err != nil || leaf.Subject.CommonName != want {
			t.Errorf("%s: certificate for %s: %v", name, leaf.Subject.CommonName, err)
		}
		for _, f := range []string{cert, key} {
			if fi, err := os.Stat(f); err != nil || fi.Mode().Perm() != 0o600 {
				t.Errorf("%s: %v %v", f, fi.Mode(), err)
			}
		}
		first, _ := os.ReadFile(cert)
		if _, err := LoadOrCreateTLS(cert, key, name); err != nil {
			t.Fatal(err)
		}
		if again, _ := os.ReadFile(cert); !bytes.Equal(first, again) {
			t.Errorf("%s: the certificate was replaced", name)
		}
	}
}

package keys

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"strings"
	"time"
)

// Lifetimes of certificates issued from a configured CA. A certificate is
// reissued at start-up once less than issuedRenewBefore of it remains, so
// a server restarted now and then never serves an expired one.
const (
	issuedLifetime    = 365 * 24 * time.Hour
	issuedRenewBefore = 30 * 24 * time.Hour
	caLifetime        = 10 * 365 * 24 * time.Hour
)

// CreateCA writes a new self-signed certificate authority (ECDSA P-256, PEM)
// to certPath and keyPath, for closed federations and tests whose servers
// get their certificates from IssueFromCA. It fails if either file exists.
func CreateCA(certPath, keyPath, commonName string) error {
	certPEM, keyPEM, err := newCert(&x509.Certificate{
		Subject:               pkix.Name{CommonName: commonName},
		NotAfter:              time.Now().Add(caLifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}, nil, nil)
	if err != nil {
		return err
	}
	if err := writeNew(keyPath, keyPEM); err != nil {
		return fmt.Errorf("ca key: %w", err)
	}
	if err := writeNew(certPath, certPEM); err != nil {
		return fmt.Errorf("ca certificate: %w", err)
	}
	return nil
}

// IssueFromCA makes sure certPath and keyPath hold a certificate for
// serverName's host issued by the CA in caCertPath and caKeyPath, and loads
// it. An existing certificate is kept while it is issued by that CA, valid
// for the name and not near expiry; otherwise a new key and certificate
// replace it. The served chain includes the CA certificate.
func IssueFromCA(caCertPath, caKeyPath, certPath, keyPath, serverName string) (tls.Certificate, error) {
	caCert, caKey, err := loadCA(caCertPath, caKeyPath)
	if err != nil {
		return tls.Certificate{}, err
	}
	host := certHost(serverName)
	if cert, err := tls.LoadX509KeyPair(certPath, keyPath); err == nil && issuedAndCurrent(cert, caCert, host) {
		return cert, nil
	}
	if err := issue(caCert, caKey, certPath, keyPath, host); err != nil {
		return tls.Certificate{}, fmt.Errorf("tls: issuing a certificate for %s from %s: %w", host, caCertPath, err)
	}
	cert, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("tls: %w", err)
	}
	return cert, nil
}

// certHost is the name a server's certificate is for: the server name
// without port and brackets.
func certHost(serverName string) string {
	host := serverName
	if h, _, err := net.SplitHostPort(serverName); err == nil {
		host = h
	}
	return strings.Trim(host, "[]")
}

func loadCA(certPath, keyPath string) (*x509.Certificate, crypto.Signer, error) {
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return nil, nil, fmt.Errorf("tls.ca_cert: %w", err)
	}
	block, _ := pem.Decode(certPEM)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, nil, fmt.Errorf("tls.ca_cert: %s holds no PEM certificate", certPath)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("tls.ca_cert: %w", err)
	}
	if !cert.IsCA {
		return nil, nil, fmt.Errorf("tls.ca_cert: %s is not a CA certificate", certPath)
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, nil, fmt.Errorf("tls.ca_key: %w", err)
	}
	key, err := parsePrivateKey(keyPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("tls.ca_key: %s: %w", keyPath, err)
	}
	if !publicKeysEqual(key.Public(), cert.PublicKey) {
		return nil, nil, fmt.Errorf("tls.ca_key: %s does not belong to the certificate in %s", keyPath, certPath)
	}
	return cert, key, nil
}

// parsePrivateKey reads the first PEM private key: PKCS#8, SEC 1 (EC) or
// PKCS#1 (RSA), the forms openssl and other tools write.
func parsePrivateKey(data []byte) (crypto.Signer, error) {
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return nil, errors.New("no PEM private key")
		}
		var key any
		var err error
		switch block.Type {
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(block.Bytes)
		case "RSA PRIVATE KEY":
			key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
		default:
			continue
		}
		if err != nil {
			return nil, err
		}
		signer, ok := key.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("unsupported key type %T", key)
		}
		return signer, nil
	}
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	type equaler interface{ Equal(crypto.PublicKey) bool }
	switch k := a.(type) {
	case *ecdsa.PublicKey, *rsa.PublicKey, ed25519.PublicKey:
		return k.(equaler).Equal(b)
	}
	return false
}

func issuedAndCurrent(cert tls.Certificate, ca *x509.Certificate, host string) bool {
	if len(cert.Certificate) == 0 {
		return false
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return false
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	_, err = leaf.Verify(x509.VerifyOptions{
		DNSName:     host,
		Roots:       roots,
		CurrentTime: time.Now().Add(issuedRenewBefore),
		KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	return err == nil
}

func issue(ca *x509.Certificate, caKey crypto.Signer, certPath, keyPath, host string) error {
	certPEM, keyPEM, err := newCert(serverCertTemplate(host, time.Now().Add(issuedLifetime)), ca, caKey)
	if err != nil {
		return err
	}
	chain := append(certPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Raw})...)
	// Key first: a crash between the two writes leaves a new key with an
	// old certificate, which fails to load and is reissued at next start,
	// rather than a certificate whose key is lost.
	if err := replaceFile(keyPath, keyPEM); err != nil {
		return err
	}
	return replaceFile(certPath, chain)
}

// serverCertTemplate is the template of a server's certificate for host (a
// DNS name or an IP address), valid until notAfter.
func serverCertTemplate(host string, notAfter time.Time) *x509.Certificate {
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: host},
		NotAfter:    notAfter,
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if ip := net.ParseIP(host); ip != nil {
		tmpl.IPAddresses = []net.IP{ip}
	} else {
		tmpl.DNSNames = []string{host}
	}
	return tmpl
}

// newCert makes a new ECDSA P-256 key and a certificate for it from tmpl,
// whose serial number (random) and NotBefore (an hour ago) it sets, signed
// by parent with parentKey, or self-signed when parent is nil. It returns
// both PEM-encoded, the key as PKCS#8.
func newCert(tmpl, parent *x509.Certificate, parentKey crypto.Signer) (certPEM, keyPEM []byte, err error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	if tmpl.SerialNumber, err = newSerial(); err != nil {
		return nil, nil, err
	}
	tmpl.NotBefore = time.Now().Add(-time.Hour)
	if parent == nil {
		parent, parentKey = tmpl, priv
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &priv.PublicKey, parentKey)
	if err != nil {
		return nil, nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), nil
}

func newSerial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
}

// LoadCertPool returns the system roots plus the PEM certificates in files,
// for verifying remote servers. Each file must hold at least one
// certificate.
func LoadCertPool(files []string) (*x509.CertPool, error) {
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		if !pool.AppendCertsFromPEM(data) {
			return nil, fmt.Errorf("%s holds no PEM certificate", f)
		}
	}
	return pool, nil
}

// Package keys loads or creates the server's long-lived secrets: the ed25519
// signing key and the federation listener's TLS certificate.
package keys

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// SigningKey is the server's ed25519 key with its key ID ("ed25519:abc").
type SigningKey struct {
	KeyID string
	Key   ed25519.PrivateKey
}

var keyVersionRE = regexp.MustCompile(`^[a-zA-Z0-9_]+$`)

// LoadOrCreateSigningKey reads the key at path, creating it when the file
// does not exist. The file format is one line, "ed25519 VERSION SEED" with
// the seed in unpadded base64, the format Synapse and its tools use, so keys
// can move between servers.
func LoadOrCreateSigningKey(path string) (*SigningKey, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return createSigningKey(path)
	}
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	fields := strings.Fields(string(data))
	if len(fields) != 3 || fields[0] != "ed25519" || !keyVersionRE.MatchString(fields[1]) {
		return nil, fmt.Errorf("signing key %s: want one line \"ed25519 VERSION SEED\"", path)
	}
	seed, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(fields[2], "="))
	if err != nil || len(seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("signing key %s: the seed is not 32 bytes of base64", path)
	}
	return &SigningKey{KeyID: "ed25519:" + fields[1], Key: ed25519.NewKeyFromSeed(seed)}, nil
}

func createSigningKey(path string) (*SigningKey, error) {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	version := "a_" + randomAlnum(4)
	line := fmt.Sprintf("ed25519 %s %s\n", version, base64.RawStdEncoding.EncodeToString(key.Seed()))
	if err := writeNew(path, []byte(line)); err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	return &SigningKey{KeyID: "ed25519:" + version, Key: key}, nil
}

func randomAlnum(n int) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	b := make([]byte, n)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

// writeNew writes a secret file readable only by its owner, failing if it
// already exists so that a second process never overwrites a key in use.
func writeNew(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	return writeSynced(f, data)
}

// replaceFile writes data to path atomically (temporary file, fsync,
// rename), readable only by the owner.
func replaceFile(path string, data []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*") // mode 0600
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := writeSynced(tmp, data); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// writeSynced writes data to f, flushes it to disk and closes f.
func writeSynced(f *os.File, data []byte) error {
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// LoadOrCreateTLS loads the certificate and key at certPath and keyPath,
// creating a self-signed certificate for serverName when neither exists.
// Self-signed is enough to start: servers check federation traffic by
// signatures, and a real certificate can replace the files at any time.
func LoadOrCreateTLS(certPath, keyPath, serverName string) (tls.Certificate, error) {
	_, errCert := os.Stat(certPath)
	_, errKey := os.Stat(keyPath)
	if errors.Is(errCert, os.ErrNotExist) && errors.Is(errKey, os.ErrNotExist) {
		if err := createSelfSigned(certPath, keyPath, serverName); err != nil {
			return tls.Certificate{}, fmt.Errorf("tls: creating a self-signed certificate: %w", err)
		}
	}
	cert, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("tls: %w", err)
	}
	return cert, nil
}

func createSelfSigned(certPath, keyPath, serverName string) error {
	certPEM, keyPEM, err := newCert(serverCertTemplate(certHost(serverName), time.Now().AddDate(10, 0, 0)), nil, nil)
	if err != nil {
		return err
	}
	if err := writeNew(keyPath, keyPEM); err != nil {
		return err
	}
	return writeNew(certPath, certPEM)
}

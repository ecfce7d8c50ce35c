package homeserver

import (
	"crypto/ed25519"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"strings"

	"github.com/sirupsen/logrus"

	"github.com/parley-chat/parley/federation"
	"github.com/parley-chat/parley/federation/keyserver"
	"github.com/parley-chat/parley/homeserver/config"
	"github.com/parley-chat/parley/homeserver/keys"
	"github.com/parley-chat/parley/storage"
)

// loadTLS loads the federation listener's certificate: issued from the
// configured CA when tls.ca_cert and tls.ca_key are set, else the files at
// tls.cert and tls.key (self-signed ones created when missing).
func loadTLS(cfg *config.Config) (tls.Certificate, error) {
	if cfg.TLS.CACert != "" {
		return keys.IssueFromCA(cfg.TLS.CACert, cfg.TLS.CAKey, cfg.TLS.Cert, cfg.TLS.Key, cfg.ServerName)
	}
	return keys.LoadOrCreateTLS(cfg.TLS.Cert, cfg.TLS.Key, cfg.ServerName)
}

// newFederation builds the federation API from the configuration.
func newFederation(cfg *config.Config, key *keys.SigningKey, db *storage.DB, log logrus.FieldLogger) (*federation.API, error) {
	f := cfg.Federation
	roots, err := keys.LoadCertPool(f.CAFiles)
	if err != nil {
		return nil, fmt.Errorf("config: federation.ca_files: %w", err)
	}
	var old []keyserver.OldKey
	for _, o := range f.OldSigningKeys {
		// Validated by config: 32 bytes of base64.
		pub, _ := base64.RawStdEncoding.DecodeString(strings.TrimRight(o.Key, "="))
		old = append(old, keyserver.OldKey{KeyID: o.KeyID, Public: ed25519.PublicKey(pub), ExpiredTS: o.ExpiredTS})
	}
	return federation.New(federation.Config{
		ServerName:            cfg.ServerName,
		ServerVersion:         Version,
		KeyID:                 key.KeyID,
		Key:                   key.Key,
		OldKeys:               old,
		KeyValidityPeriod:     f.KeyValidityPeriod,
		Store:                 db,
		TrustedKeyServers:     f.TrustedKeyServers,
		StaticHosts:           f.StaticHosts,
		AllowPrivateAddresses: f.AllowPrivateAddresses,
		RootCAs:               roots,
		AllowServers:          f.AllowServers,
		DenyServers:           f.DenyServers,
		Log:                   log.WithField("component", "federation"),
	})
}

package config

import (
	"encoding/base64"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/parley-chat/parley/matrix/id"
)

// Federation configures the server-server API: key publication, which
// servers to trust and talk to, and how to reach them.
type Federation struct {
	// KeyValidityPeriod is how far ahead the published signing keys are
	// declared valid (valid_until_ts). Other servers refetch after it, and
	// use at most 7 days whatever is published.
	KeyValidityPeriod time.Duration `yaml:"key_validity_period"`
	// OldSigningKeys are keys this server signed with before a rotation,
	// still published in old_verify_keys so that its old events verify.
	OldSigningKeys OldSigningKeys `yaml:"old_signing_keys"`
	// TrustedKeyServers are notary servers asked for a server's keys when
	// that server cannot be reached itself.
	TrustedKeyServers []string `yaml:"trusted_key_servers"`
	// StaticHosts maps server names to host:port, bypassing discovery
	// (.well-known, SRV, DNS port rules) for closed networks and tests.
	StaticHosts map[string]string `yaml:"static_hosts"`
	// AllowPrivateAddresses lets federation connect to loopback, private
	// and link-local addresses found by discovery. Off, such destinations
	// are refused before connecting (static_hosts entries excepted).
	AllowPrivateAddresses bool `yaml:"allow_private_addresses"`
	// CAFiles are PEM files of certificate authorities trusted, besides
	// the system's, for remote servers' certificates.
	CAFiles []string `yaml:"ca_files"`
	// AllowServers, when not empty, is the only servers federated with;
	// DenyServers are never federated with. Entries are server names,
	// *.domain for every subdomain, or *.
	AllowServers []string `yaml:"allow_servers"`
	DenyServers  []string `yaml:"deny_servers"`
}

// OldSigningKey is one rotated-out signing key.
type OldSigningKey struct {
	// KeyID is the key's ID, such as "ed25519:a_old".
	KeyID string `yaml:"key_id"`
	// Key is the public key in (unpadded) base64.
	Key string `yaml:"key"`
	// ExpiredTS is when the key stopped being used, in milliseconds since
	// the epoch.
	ExpiredTS int64 `yaml:"expired_ts"`
}

// OldSigningKeys is a list of rotated-out keys. In the environment it is
// written KEY_ID=KEY@EXPIRED_TS entries separated by commas.
type OldSigningKeys []OldSigningKey

// UnmarshalText parses the environment form.
func (o *OldSigningKeys) UnmarshalText(b []byte) error {
	var keys OldSigningKeys
	for entry := range strings.SplitSeq(string(b), ",") {
		if entry = strings.TrimSpace(entry); entry == "" {
			continue
		}
		keyID, rest, ok1 := strings.Cut(entry, "=")
		key, ts, ok2 := strings.Cut(rest, "@")
		n, err := strconv.ParseInt(ts, 10, 64)
		if !ok1 || !ok2 || err != nil {
			return fmt.Errorf("want KEY_ID=BASE64_KEY@EXPIRED_TS entries separated by commas, got %q", entry)
		}
		keys = append(keys, OldSigningKey{KeyID: keyID, Key: key, ExpiredTS: n})
	}
	*o = keys
	return nil
}

func defaultFederation() Federation {
	return Federation{KeyValidityPeriod: 7 * 24 * time.Hour}
}

func (f *Federation) validate(serverName string) error {
	// An empty YAML list or mapping decodes as empty rather than nil;
	// both mean the same, so keep one form.
	for _, l := range []*[]string{&f.TrustedKeyServers, &f.CAFiles, &f.AllowServers, &f.DenyServers} {
		if len(*l) == 0 {
			*l = nil
		}
	}
	if len(f.OldSigningKeys) == 0 {
		f.OldSigningKeys = nil
	}
	if len(f.StaticHosts) == 0 {
		f.StaticHosts = nil
	}

	if f.KeyValidityPeriod < time.Hour {
		return keyError("federation.key_validity_period", "must be at least 1h (servers refetch keys that expire sooner)")
	}
	seen := map[string]bool{}
	for i, k := range f.OldSigningKeys {
		key := fmt.Sprintf("federation.old_signing_keys[%d]", i)
		kid, err := id.ParseKeyID(k.KeyID)
		if err != nil || kid.Algorithm != "ed25519" {
			return keyError(key+".key_id", "want an ed25519 key ID such as ed25519:a_old, got %q", k.KeyID)
		}
		if seen[k.KeyID] {
			return keyError(key+".key_id", "%s is listed twice", k.KeyID)
		}
		seen[k.KeyID] = true
		if b, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(k.Key, "=")); err != nil || len(b) != 32 {
			return keyError(key+".key", "want the 32-byte ed25519 public key in base64")
		}
		if k.ExpiredTS <= 0 {
			return keyError(key+".expired_ts", "want when the key stopped being used, in milliseconds since 1970")
		}
	}
	for _, s := range f.TrustedKeyServers {
		if _, err := id.ParseServerName(s); err != nil {
			return keyError("federation.trusted_key_servers", "%v", err)
		}
		if s == serverName {
			return keyError("federation.trusted_key_servers", "lists this server itself")
		}
	}
	for name, hostport := range f.StaticHosts {
		if _, err := id.ParseServerName(name); err != nil {
			return keyError("federation.static_hosts", "%v", err)
		}
		host, port, err := net.SplitHostPort(hostport)
		if n, perr := strconv.Atoi(port); err != nil || perr != nil || host == "" || n < 1 || n > 65535 {
			return keyError("federation.static_hosts", "%s: want host:port, got %q", name, hostport)
		}
	}
	for _, file := range f.CAFiles {
		if file == "" {
			return keyError("federation.ca_files", "empty file name")
		}
	}
	for key, list := range map[string][]string{"federation.allow_servers": f.AllowServers, "federation.deny_servers": f.DenyServers} {
		for _, p := range list {
			name := strings.TrimPrefix(p, "*.")
			if _, err := id.ParseServerName(name); p != "*" && err != nil {
				return keyError(key, "want server names, *.domain or *, got %q", p)
			}
		}
	}
	return nil
}

package config

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

const testPubKey = "l8Hft5qXKn1vfHrg3p4+W8gELQVo8N13JkluMfmn2sQ"

func TestFederationKeys(t *testing.T) {
	c, err := Load(writeFile(t, `
tls:
  ca_cert: /etc/parley/ca.crt
  ca_key: /etc/parley/ca.key
federation:
  key_validity_period: 24h
  old_signing_keys:
    - key_id: ed25519:old
      key: `+testPubKey+`
      expired_ts: 1700000000000
  trusted_key_servers: [matrix.org]
  static_hosts:
    hs1.test: 127.0.0.1:8448
  allow_private_addresses: true
  ca_files: [/etc/parley/ca.crt]
  allow_servers: ["*.example.org", friend.net]
  deny_servers: [bad.example.org]
`), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := Federation{
		KeyValidityPeriod:     24 * time.Hour,
		OldSigningKeys:        OldSigningKeys{{KeyID: "ed25519:old", Key: testPubKey, ExpiredTS: 1700000000000}},
		TrustedKeyServers:     []string{"matrix.org"},
		StaticHosts:           map[string]string{"hs1.test": "127.0.0.1:8448"},
		AllowPrivateAddresses: true,
		CAFiles:               []string{"/etc/parley/ca.crt"},
		AllowServers:          []string{"*.example.org", "friend.net"},
		DenyServers:           []string{"bad.example.org"},
	}
	if !reflect.DeepEqual(c.Federation, want) {
		t.Fatalf("got %+v\nwant %+v", c.Federation, want)
	}
	if c.TLS.CACert != "/etc/parley/ca.crt" || c.TLS.CAKey != "/etc/parley/ca.key" {
		t.Fatalf("tls: %+v", c.TLS)
	}

	env, err := Load(writeFile(t, ""), []string{
		"PARLEY_FEDERATION_STATIC_HOSTS=hs1.test=127.0.0.1:1, hs2.test=[::1]:2",
		"PARLEY_FEDERATION_OLD_SIGNING_KEYS=ed25519:a=" + testPubKey + "@5,ed25519:b=" + testPubKey + "=@6",
		"PARLEY_FEDERATION_TRUSTED_KEY_SERVERS=matrix.org,example.org",
		"PARLEY_FEDERATION_ALLOW_PRIVATE_ADDRESSES=yes",
		"PARLEY_FEDERATION_KEY_VALIDITY_PERIOD=48h",
		"PARLEY_FEDERATION_CA_FILES=/a.pem,/b.pem",
		"PARLEY_FEDERATION_DENY_SERVERS=*",
		"PARLEY_TLS_CA_CERT=/ca.crt",
		"PARLEY_TLS_CA_KEY=/ca.key",
	})
	if err != nil {
		t.Fatal(err)
	}
	f := env.Federation
	if !reflect.DeepEqual(f.StaticHosts, map[string]string{"hs1.test": "127.0.0.1:1", "hs2.test": "[::1]:2"}) ||
		!reflect.DeepEqual(f.OldSigningKeys, OldSigningKeys{{"ed25519:a", testPubKey, 5}, {"ed25519:b", testPubKey + "=", 6}}) ||
		!reflect.DeepEqual(f.TrustedKeyServers, []string{"matrix.org", "example.org"}) ||
		!f.AllowPrivateAddresses || f.KeyValidityPeriod != 48*time.Hour ||
		!reflect.DeepEqual(f.CAFiles, []string{"/a.pem", "/b.pem"}) || !reflect.DeepEqual(f.DenyServers, []string{"*"}) ||
		env.TLS.CACert != "/ca.crt" {
		t.Fatalf("environment: %+v", f)
	}

	d, err := Load(writeFile(t, ""), nil)
	if err != nil {
		t.Fatal(err)
	}
	if d.Federation.KeyValidityPeriod != 7*24*time.Hour || d.Federation.AllowPrivateAddresses || d.Federation.TrustedKeyServers != nil {
		t.Fatalf("defaults: %+v", d.Federation)
	}
}

func TestFederationBadValues(t *testing.T) {
	cases := []struct{ body, key string }{
		{"federation:\n  key_validity_period: 10m\n", "federation.key_validity_period"},
		{"federation:\n  old_signing_keys:\n    - key_id: rsa:x\n      key: " + testPubKey + "\n      expired_ts: 1\n", "federation.old_signing_keys[0].key_id"},
		{"federation:\n  old_signing_keys:\n    - key_id: ed25519:x\n      key: abc\n      expired_ts: 1\n", "federation.old_signing_keys[0].key"},
		{"federation:\n  old_signing_keys:\n    - key_id: ed25519:x\n      key: " + testPubKey + "\n", "federation.old_signing_keys[0].expired_ts"},
		{"federation:\n  old_signing_keys:\n    - {key_id: 'ed25519:x', key: " + testPubKey + ", expired_ts: 1}\n    - {key_id: 'ed25519:x', key: " + testPubKey + ", expired_ts: 2}\n", "federation.old_signing_keys[1].key_id"},
		{"federation:\n  trusted_key_servers: ['bad name']\n", "federation.trusted_key_servers"},
		{"federation:\n  trusted_key_servers: [localhost]\n", "federation.trusted_key_servers"},
		{"federation:\n  static_hosts:\n    hs1.test: nowhere\n", "federation.static_hosts"},
		{"federation:\n  static_hosts:\n    hs1.test: 'host:99999'\n", "federation.static_hosts"},
		{"federation:\n  static_hosts:\n    'bad name': 'host:1'\n", "federation.static_hosts"},
		{"federation:\n  allow_servers: ['*bad']\n", "federation.allow_servers"},
		{"federation:\n  deny_servers: ['a b']\n", "federation.deny_servers"},
		{"federation:\n  ca_files: ['']\n", "federation.ca_files"},
		{"federation:\n  unknown: 1\n", "federation.unknown"},
		{"tls:\n  ca_cert: /x\n", "tls.ca_cert"},
	}
	for _, tc := range cases {
		_, err := Load(writeFile(t, tc.body), nil)
		if err == nil || !strings.Contains(err.Error(), "config: "+tc.key+":") {
			t.Errorf("%q: %v, want an error naming %s", tc.body, err, tc.key)
		}
	}
	if _, err := Load(writeFile(t, ""), []string{"PARLEY_FEDERATION_OLD_SIGNING_KEYS=ed25519:a"}); err == nil ||
		!strings.Contains(err.Error(), "federation.old_signing_keys") {
		t.Fatalf("bad env old keys: %v", err)
	}
}

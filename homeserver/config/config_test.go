package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "parley.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestSampleIsTheDefault(t *testing.T) {
	got, err := Load(writeFile(t, Sample("localhost", "./parley-data")), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	if err := want.Finish(); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("the sample does not load as the defaults:\n got %+v\nwant %+v", got, want)
	}
}

func TestSampleDocumentsEveryKey(t *testing.T) {
	var doc map[string]any
	if err := yaml.Unmarshal([]byte(Sample("localhost", "./parley-data")), &doc); err != nil {
		t.Fatal(err)
	}
	keys := map[string]envKey{}
	envKeys(reflect.ValueOf(Default()).Elem(), "", keys)
	for _, k := range keys {
		var node any = doc
		for _, part := range strings.Split(k.key, ".") {
			m, ok := node.(map[string]any)
			if !ok {
				node = nil
				break
			}
			node, ok = m[part]
			if !ok {
				t.Errorf("config key %s is missing from the sample", k.key)
				break
			}
		}
	}
}

func TestRepositorySampleIsCurrent(t *testing.T) {
	// config.sample.yaml at the top of the repository must be exactly what
	// `parley generate-config --server-name localhost` prints.
	root, err := os.ReadFile("../../config.sample.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if string(root) != Sample("localhost", "./parley-data") {
		t.Fatal("config.sample.yaml is stale: regenerate it with `go run ./cmd/parley generate-config --server-name localhost > config.sample.yaml`")
	}
}

func TestLoadGoodFile(t *testing.T) {
	p := writeFile(t, `
server_name: example.org:8448
data_dir: /var/lib/parley
database: postgres://parley@db/parley?sslmode=disable
database_pool:
  max_open_conns: 50
  conn_max_lifetime: 30m
registration:
  enabled: yes
logging:
  format: json
`)
	c, err := Load(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.ServerName != "example.org:8448" || c.DatabasePool.MaxOpenConns != 50 || c.DatabasePool.ConnMaxLifetime != 30*time.Minute ||
		!c.Registration.Enabled || c.Logging.Format != "json" || c.DatabasePool.MaxIdleConns != 10 {
		t.Fatalf("unexpected config %+v", c)
	}
	if c.SigningKeyPath != "/var/lib/parley/signing.key" || c.TLS.Cert != "/var/lib/parley/tls.crt" {
		t.Fatalf("paths not derived from data_dir: %+v", c)
	}
	empty, err := Load(writeFile(t, ""), nil)
	if err != nil || empty.ServerName != "localhost" || empty.Database != "sqlite:parley-data/parley.db" {
		t.Fatalf("empty file: %+v %v", empty, err)
	}
}

func TestLoadBadFiles(t *testing.T) {
	cases := []struct {
		name, body, wantKey string
	}{
		{"unknown top-level key", "server_nmae: x\n", "server_nmae"},
		{"unknown nested key", "registration:\n  enable: true\n", "registration.enable"},
		{"string for integer", "database_pool:\n  max_open_conns: lots\n", "database_pool.max_open_conns"},
		{"bad boolean", "registration:\n  enabled: maybe\n", "registration.enabled"},
		{"bad duration", "shutdown_timeout: soon\n", "shutdown_timeout"},
		{"mapping for scalar", "server_name:\n  a: b\n", "server_name"},
		{"scalar for mapping", "logging: loud\n", "logging"},
		{"invalid server name", "server_name: 'not a name'\n", "server_name"},
		{"unsupported database", "database: mysql://x\n", "database"},
		{"bad listen address", "listen_client: 8008\n", "listen_client"},
		{"zero pool", "database_pool:\n  max_open_conns: 0\n", "database_pool.max_open_conns"},
		{"negative idle", "database_pool:\n  max_idle_conns: -1\n", "database_pool.max_idle_conns"},
		{"tiny body limit", "max_request_body_bytes: 10\n", "max_request_body_bytes"},
		{"bad log level", "logging:\n  level: chatty\n", "logging.level"},
		{"bad log format", "logging:\n  format: xml\n", "logging.format"},
		{"relative base URL", "public_base_url: matrix.example.org\n", "public_base_url"},
		{"ftp base URL", "public_base_url: ftp://example.org\n", "public_base_url"},
		{"rate not a number", "rate_limits:\n  login:\n    per_second: fast\n", "rate_limits.login.per_second"},
		{"negative burst", "rate_limits:\n  registration:\n    burst: -1\n", "rate_limits.registration.burst"},
		{"zero rate with burst", "rate_limits:\n  message_sending:\n    per_second: 0\n", "rate_limits.message_sending.per_second"},
		{"unknown limit", "rate_limits:\n  logins: {}\n", "rate_limits.logins"},
		{"token without registration", "registration:\n  requires_token: true\n", "registration.requires_token"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(writeFile(t, tc.body), nil)
			if err == nil {
				t.Fatal("accepted")
			}
			msg := err.Error()
			if !strings.Contains(msg, "config: "+tc.wantKey+":") || strings.Contains(msg, "\n") {
				t.Fatalf("error %q does not name key %s on one line", msg, tc.wantKey)
			}
		})
	}
	if _, err := Load(writeFile(t, "server_name: [unclosed\n"), nil); err == nil || !strings.Contains(err.Error(), "not valid YAML") {
		t.Fatalf("broken YAML: %v", err)
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing.yaml"), nil); err == nil {
		t.Fatal("missing file accepted")
	}
}

func TestPublicBaseURL(t *testing.T) {
	cases := []struct{ body, want string }{
		{"", "http://127.0.0.1:8008"},
		{"listen_client: 0.0.0.0:9000\n", "http://localhost:9000"},
		{"listen_client: '[::]:9000'\n", "http://localhost:9000"},
		{"listen_client: ':9000'\n", "http://localhost:9000"},
		{"listen_client: '[::1]:9000'\n", "http://[::1]:9000"},
		{"public_base_url: https://matrix.example.org/\n", "https://matrix.example.org"},
		{"public_base_url: https://example.org/matrix\n", "https://example.org/matrix"},
	}
	for _, tc := range cases {
		c, err := Load(writeFile(t, tc.body), nil)
		if err != nil {
			t.Fatalf("%q: %v", tc.body, err)
		}
		if c.PublicBaseURL != tc.want {
			t.Errorf("%q: public_base_url %q, want %q", tc.body, c.PublicBaseURL, tc.want)
		}
	}
}

func TestRateLimits(t *testing.T) {
	c, err := Load(writeFile(t, "rate_limits:\n  login:\n    per_second: 0.5\n    burst: 0\n  room_creation:\n    burst: 3\n"),
		[]string{"PARLEY_RATE_LIMITS_MESSAGE_SENDING_PER_SECOND=2.5"})
	if err != nil {
		t.Fatal(err)
	}
	d := Default().RateLimits
	want := RateLimits{
		Login:          RateLimit{PerSecond: 0.5, Burst: 0},
		Registration:   d.Registration,
		RoomCreation:   RateLimit{PerSecond: d.RoomCreation.PerSecond, Burst: 3},
		MessageSending: RateLimit{PerSecond: 2.5, Burst: d.MessageSending.Burst},
	}
	if c.RateLimits != want {
		t.Fatalf("rate limits %+v, want %+v", c.RateLimits, want)
	}
}

func TestEnvironmentOverrides(t *testing.T) {
	p := writeFile(t, "server_name: file.example\nregistration:\n  enabled: false\n")
	c, err := Load(p, []string{
		"PARLEY_SERVER_NAME=env.example",
		"PARLEY_DATA_DIR=/srv/parley",
		"PARLEY_DATABASE=postgres://u@h/db",
		"PARLEY_LISTEN_CLIENT=0.0.0.0:9008",
		"PARLEY_LISTEN_FEDERATION=0.0.0.0:9448",
		"PARLEY_REGISTRATION_ENABLED=true",
		"PARLEY_REGISTRATION_SHARED_SECRET=s3cret",
		"PARLEY_REGISTRATION_REQUIRES_TOKEN=true",
		"PARLEY_DATABASE_POOL_MAX_OPEN_CONNS=7",
		"PARLEY_SHUTDOWN_TIMEOUT=3s",
		"PARLEY_TEST_POSTGRES=ignored",
		"HOME=/root",
	})
	if err != nil {
		t.Fatal(err)
	}
	want := Config{
		ServerName: "env.example", DataDir: "/srv/parley", Database: "postgres://u@h/db",
		ListenClient: "0.0.0.0:9008", ListenFederation: "0.0.0.0:9448",
		Registration: Registration{Enabled: true, RequiresToken: true, SharedSecret: "s3cret"},
	}
	if c.ServerName != want.ServerName || c.DataDir != want.DataDir || c.Database != want.Database ||
		c.ListenClient != want.ListenClient || c.ListenFederation != want.ListenFederation ||
		c.Registration != want.Registration || c.DatabasePool.MaxOpenConns != 7 || c.ShutdownTimeout != 3*time.Second {
		t.Fatalf("overrides not applied: %+v", c)
	}
	if c.SigningKeyPath != "/srv/parley/signing.key" {
		t.Fatalf("derived path ignores PARLEY_DATA_DIR: %s", c.SigningKeyPath)
	}

	if _, err := Load(p, []string{"PARLEY_REGISTRATION_ENABLED=perhaps"}); err == nil ||
		!strings.Contains(err.Error(), "registration.enabled") || !strings.Contains(err.Error(), "PARLEY_REGISTRATION_ENABLED") {
		t.Fatalf("bad env value: %v", err)
	}
	if _, err := Load(p, []string{"PARLEY_SERVERNAME=x"}); err == nil || !strings.Contains(err.Error(), "PARLEY_SERVERNAME") {
		t.Fatalf("unknown env key: %v", err)
	}
	if _, err := Load(p, []string{"PARLEY_SERVER_NAME=bad name"}); err == nil || !strings.Contains(err.Error(), "server_name") {
		t.Fatalf("invalid env value: %v", err)
	}
}

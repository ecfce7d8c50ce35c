// Package config defines Parley's configuration: one YAML file whose every key
// can be overridden from the environment, with defaults and validation that
// names the offending key.
package config

import (
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	"github.com/parley-chat/parley/matrix/event"
	"github.com/parley-chat/parley/matrix/id"
)

// Config is the whole configuration. The yaml tags are the key names users
// write; the environment name of a key is PARLEY_ followed by its path in
// upper case joined by "_" (server_name -> PARLEY_SERVER_NAME,
// registration.shared_secret -> PARLEY_REGISTRATION_SHARED_SECRET).
type Config struct {
	// ServerName is the name users and other servers know this server by.
	ServerName string `yaml:"server_name"`
	// DataDir holds the signing key, TLS certificate and SQLite database.
	DataDir string `yaml:"data_dir"`
	// Database is "sqlite:PATH" or a "postgres://" DSN.
	Database     string       `yaml:"database"`
	DatabasePool DatabasePool `yaml:"database_pool"`
	// ListenClient is the address of the plain-HTTP client API (put a TLS
	// reverse proxy in front of it for anything but local use).
	ListenClient string `yaml:"listen_client"`
	// PublicBaseURL is the URL clients reach the client API at, announced
	// by /.well-known/matrix/client and login responses. Empty means
	// http://<listen_client>.
	PublicBaseURL string `yaml:"public_base_url"`
	// XForwardedFor takes the client's address from the X-Forwarded-For
	// header set by a reverse proxy instead of from the connection, for rate
	// limits and the devices' last-seen addresses.
	XForwardedFor bool `yaml:"x_forwarded_for"`
	// ListenFederation is the address of the HTTPS federation API.
	ListenFederation string       `yaml:"listen_federation"`
	SigningKeyPath   string       `yaml:"signing_key_path"`
	TLS              TLS          `yaml:"tls"`
	Registration     Registration `yaml:"registration"`
	// AppServiceConfigFiles are the registration files of the application
	// services (bridges) to connect, as the bridges generate them.
	AppServiceConfigFiles []string `yaml:"app_service_config_files"`
	// DefaultRoomVersion is the version of rooms created without one.
	DefaultRoomVersion string     `yaml:"default_room_version"`
	RateLimits         RateLimits `yaml:"rate_limits"`
	// Media configures the media repository.
	Media Media `yaml:"media"`
	// Encryption configures end-to-end encryption.
	Encryption Encryption `yaml:"encryption"`
	// Federation configures the server-server API.
	Federation Federation `yaml:"federation"`
	// Presence configures user presence.
	Presence Presence `yaml:"presence"`
	// Push configures push notifications.
	Push Push `yaml:"push"`
	// UserDirectory configures the user directory search.
	UserDirectory UserDirectory `yaml:"user_directory"`
	// ServerNotices configures notices from the server to its users.
	ServerNotices ServerNotices `yaml:"server_notices"`
	// MaxRequestBodyBytes bounds every request body; larger ones get 413 M_TOO_LARGE.
	MaxRequestBodyBytes int64         `yaml:"max_request_body_bytes"`
	ShutdownTimeout     time.Duration `yaml:"shutdown_timeout"`
	Logging             Logging       `yaml:"logging"`
}

// DatabasePool sizes the connection pool.
type DatabasePool struct {
	MaxOpenConns    int           `yaml:"max_open_conns"`
	MaxIdleConns    int           `yaml:"max_idle_conns"`
	ConnMaxLifetime time.Duration `yaml:"conn_max_lifetime"`
}

// TLS names the federation listener's certificate files. When they do not
// exist a self-signed certificate for server_name is generated there.
type TLS struct {
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
	// CACert and CAKey, when both set, name a certificate authority from
	// which the server issues its own certificate (into Cert and Key) at
	// start-up, for closed federations and tests.
	CACert string `yaml:"ca_cert"`
	CAKey  string `yaml:"ca_key"`
}

// Registration controls who may create accounts.
type Registration struct {
	// Enabled allows anyone to register through the client API.
	Enabled bool `yaml:"enabled"`
	// RequiresToken limits registration to holders of a registration token
	// (m.login.registration_token), which admins create with the
	// /_parley/admin/v1/registration_tokens API. It needs Enabled.
	RequiresToken bool `yaml:"requires_token"`
	// SharedSecret enables the shared-secret admin registration API when set.
	SharedSecret string `yaml:"shared_secret"`
}

// RateLimits are the token buckets that protect expensive or abusable
// actions. Server admins are exempt.
type RateLimits struct {
	// Login limits password attempts per client address and per account.
	Login RateLimit `yaml:"login"`
	// Registration limits new accounts per client address.
	Registration RateLimit `yaml:"registration"`
	// RoomCreation limits new rooms per user.
	RoomCreation RateLimit `yaml:"room_creation"`
	// MessageSending limits sent events per user.
	MessageSending RateLimit `yaml:"message_sending"`
}

// RateLimit is one token bucket: it holds up to Burst requests and refills
// at PerSecond requests per second. A Burst of 0 turns the limit off.
type RateLimit struct {
	PerSecond float64 `yaml:"per_second"`
	Burst     int     `yaml:"burst"`
}

// Logging controls the log output.
type Logging struct {
	// Level is one of trace, debug, info, warn, error.
	Level string `yaml:"level"`
	// Format is "auto" (text on a terminal, JSON otherwise), "text" or "json".
	Format string `yaml:"format"`
}

// Default returns the configuration used for every key a file leaves out.
// Paths under the data directory are left empty here and derived from
// data_dir by Finish, so that moving data_dir moves them too.
func Default() *Config {
	return &Config{
		ServerName:       "localhost",
		DataDir:          "./parley-data",
		ListenClient:     "127.0.0.1:8008",
		ListenFederation: ":8448",
		// Empty rather than nil, as the sample's [] reads.
		AppServiceConfigFiles: []string{},
		DatabasePool: DatabasePool{
			MaxOpenConns:    20,
			MaxIdleConns:    10,
			ConnMaxLifetime: time.Hour,
		},
		RateLimits: RateLimits{
			Login:          RateLimit{PerSecond: 0.2, Burst: 10},
			Registration:   RateLimit{PerSecond: 0.1, Burst: 10},
			RoomCreation:   RateLimit{PerSecond: 0.1, Burst: 10},
			MessageSending: RateLimit{PerSecond: 1, Burst: 20},
		},
		Media:               defaultMedia(),
		Federation:          defaultFederation(),
		Presence:            Presence{Enabled: true},
		Push:                defaultPush(),
		ServerNotices:       defaultServerNotices(),
		DefaultRoomVersion:  string(event.DefaultRoomVersion),
		MaxRequestBodyBytes: 1 << 20,
		ShutdownTimeout:     10 * time.Second,
		Logging:             Logging{Level: "info", Format: "auto"},
	}
}

// Finish fills the keys derived from data_dir and validates every value.
// The error names the key and what is wrong with it.
func (c *Config) Finish() error {
	if c.DataDir == "" {
		return keyError("data_dir", "must not be empty")
	}
	inData := func(p *string, name string) {
		if *p == "" {
			*p = filepath.Join(c.DataDir, name)
		}
	}
	if c.Database == "" {
		c.Database = "sqlite:" + filepath.Join(c.DataDir, "parley.db")
	}
	inData(&c.SigningKeyPath, "signing.key")
	inData(&c.TLS.Cert, "tls.crt")
	inData(&c.TLS.Key, "tls.key")
	inData(&c.Media.Path, "media")
	if c.PublicBaseURL == "" {
		if host, port, err := net.SplitHostPort(c.ListenClient); err == nil {
			// A wildcard address is where the server listens, not where a
			// client can reach it.
			if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
				host = "localhost"
			}
			c.PublicBaseURL = "http://" + net.JoinHostPort(host, port)
		}
	}
	return c.validate()
}

func (c *Config) validate() error {
	sn, err := id.ParseServerName(c.ServerName)
	if err != nil {
		return keyError("server_name", "%v", err)
	}
	c.ServerName = string(sn)
	if !strings.HasPrefix(c.Database, "sqlite:") && !strings.HasPrefix(c.Database, "postgres://") && !strings.HasPrefix(c.Database, "postgresql://") {
		return keyError("database", "must start with sqlite: or postgres://, got %q", c.Database)
	}
	if c.Database == "sqlite:" {
		return keyError("database", "sqlite: needs a file path")
	}
	if c.Registration.RequiresToken && !c.Registration.Enabled {
		return keyError("registration.requires_token", "needs registration.enabled: true (registration is closed to everyone now)")
	}
	for key, addr := range map[string]string{"listen_client": c.ListenClient, "listen_federation": c.ListenFederation} {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return keyError(key, "must be host:port, got %q", addr)
		}
	}
	u, err := url.Parse(c.PublicBaseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return keyError("public_base_url", "must be an http:// or https:// URL such as https://matrix.example.org, got %q", c.PublicBaseURL)
	}
	c.PublicBaseURL = strings.TrimRight(c.PublicBaseURL, "/")
	for _, rl := range []struct {
		key string
		RateLimit
	}{
		{"login", c.RateLimits.Login}, {"registration", c.RateLimits.Registration},
		{"room_creation", c.RateLimits.RoomCreation}, {"message_sending", c.RateLimits.MessageSending},
	} {
		if rl.Burst < 0 {
			return keyError("rate_limits."+rl.key+".burst", "must not be negative")
		}
		if rl.PerSecond <= 0 && rl.Burst > 0 {
			return keyError("rate_limits."+rl.key+".per_second", "must be positive (set burst to 0 to turn the limit off)")
		}
	}
	if c.DatabasePool.MaxOpenConns < 1 {
		return keyError("database_pool.max_open_conns", "must be at least 1")
	}
	if c.DatabasePool.MaxIdleConns < 0 {
		return keyError("database_pool.max_idle_conns", "must not be negative")
	}
	// More idle than open connections cannot be kept; database/sql would
	// lower it the same way, so lowering the default with max_open_conns
	// is not worth an error.
	c.DatabasePool.MaxIdleConns = min(c.DatabasePool.MaxIdleConns, c.DatabasePool.MaxOpenConns)
	if c.DatabasePool.ConnMaxLifetime < 0 {
		return keyError("database_pool.conn_max_lifetime", "must not be negative")
	}
	if _, err := event.RoomVersion(c.DefaultRoomVersion).Info(); err != nil {
		return keyError("default_room_version", "%v", err)
	}
	if err := c.Media.validate(); err != nil {
		return err
	}
	if (c.TLS.CACert == "") != (c.TLS.CAKey == "") {
		return keyError("tls.ca_cert", "tls.ca_cert and tls.ca_key must be set together")
	}
	if err := c.Federation.validate(c.ServerName); err != nil {
		return err
	}
	for i, f := range c.AppServiceConfigFiles {
		if strings.TrimSpace(f) == "" {
			return keyError(fmt.Sprintf("app_service_config_files[%d]", i), "must be a file path")
		}
	}
	if err := c.Push.validate(); err != nil {
		return err
	}
	if err := c.ServerNotices.validate(c.ServerName); err != nil {
		return err
	}
	if c.MaxRequestBodyBytes < 65536 {
		return keyError("max_request_body_bytes", "must be at least 65536 (one event)")
	}
	if c.ShutdownTimeout <= 0 {
		return keyError("shutdown_timeout", "must be positive")
	}
	switch c.Logging.Level {
	case "trace", "debug", "info", "warn", "error":
	default:
		return keyError("logging.level", "must be one of trace, debug, info, warn, error; got %q", c.Logging.Level)
	}
	switch c.Logging.Format {
	case "auto", "text", "json":
	default:
		return keyError("logging.format", "must be auto, text or json; got %q", c.Logging.Format)
	}
	return nil
}

// Error is a configuration problem with the key it concerns.
type Error struct {
	Key string
	Msg string
}

func (e *Error) Error() string { return fmt.Sprintf("config: %s: %s", e.Key, e.Msg) }

func keyError(key, format string, args ...any) error {
	return &Error{Key: key, Msg: fmt.Sprintf(format, args...)}
}

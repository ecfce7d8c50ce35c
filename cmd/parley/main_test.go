package main

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/parley-chat/parley/homeserver/config"
	"github.com/parley-chat/parley/storage/storagetest"
)

// These tests build and run the real binary, as a user would.

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "parley-bin")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "parley")
	out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput()
	if err != nil {
		os.Stderr.Write(out)
		panic(err)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// proc is a running parley process.
type proc struct {
	t         *testing.T
	cmd       *exec.Cmd
	clientURL string
	fedAddr   string
	logs      *bytes.Buffer
	logLines  chan map[string]any
	exited    chan error
}

func baseEnv(dataDir string, extra ...string) []string {
	env := []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + os.Getenv("HOME"),
		"PARLEY_DATA_DIR=" + dataDir,
		"PARLEY_LISTEN_CLIENT=127.0.0.1:0",
		"PARLEY_LISTEN_FEDERATION=127.0.0.1:0",
	}
	return append(env, extra...)
}

// start runs `parley` with env in dir and waits until both listeners are up.
func start(t *testing.T, dir string, env []string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Dir = dir
	cmd.Env = env
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{t: t, cmd: cmd, logs: &bytes.Buffer{}, logLines: make(chan map[string]any, 1000), exited: make(chan error, 1)}
	scanDone := make(chan struct{})
	go func() {
		defer close(scanDone)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			p.logs.WriteString(line + "\n")
			var m map[string]any
			if json.Unmarshal([]byte(line), &m) == nil {
				select {
				case p.logLines <- m:
				default:
				}
			}
		}
	}()
	go func() { <-scanDone; p.exited <- cmd.Wait() }()
	t.Cleanup(func() { _ = cmd.Process.Kill() })

	deadline := time.After(30 * time.Second)
	for p.clientURL == "" || p.fedAddr == "" {
		select {
		case m := <-p.logLines:
			switch m["msg"] {
			case "client API listening (HTTP)":
				p.clientURL = "http://" + m["addr"].(string)
			case "federation API listening (HTTPS)":
				p.fedAddr = m["addr"].(string)
			}
		case err := <-p.exited:
			t.Fatalf("parley exited before listening: %v\n%s", err, p.logs)
		case <-deadline:
			t.Fatalf("parley did not start listening:\n%s", p.logs)
		}
	}
	return p
}

// stop sends sig and returns the exit error.
func (p *proc) stop(sig syscall.Signal) error {
	_ = p.cmd.Process.Signal(sig)
	select {
	case err := <-p.exited:
		return err
	case <-time.After(30 * time.Second):
		p.t.Fatalf("parley did not exit on %v", sig)
		return nil
	}
}

func (p *proc) do(method, path string, body io.Reader) (*http.Response, map[string]any) {
	p.t.Helper()
	req, _ := http.NewRequest(method, p.clientURL+path, body)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		p.t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	raw, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(raw, &m)
	return resp, m
}

func runCmd(t *testing.T, dir string, env []string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Dir = dir
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestFirstStartServeAndStop(t *testing.T) {
	work := t.TempDir()
	data := filepath.Join(work, "parley-data")
	env := baseEnv(data)
	p := start(t, work, env)

	for _, f := range []string{"parley.yaml", "signing.key", "tls.crt", "tls.key", "parley.db"} {
		if _, err := os.Stat(filepath.Join(data, f)); err != nil {
			t.Errorf("first start did not create %s: %v", f, err)
		}
	}
	key1, _ := os.ReadFile(filepath.Join(data, "signing.key"))
	cert1, _ := os.ReadFile(filepath.Join(data, "tls.crt"))

	resp, body := p.do("GET", "/_matrix/client/versions", nil)
	if resp.StatusCode != 200 || body["versions"] == nil {
		t.Fatalf("versions: %d %v", resp.StatusCode, body)
	}
	if vs, _ := body["versions"].([]any); len(vs) == 0 || vs[len(vs)-1] != "v1.2" {
		t.Fatalf("versions lists %v", body["versions"])
	}
	if uf, _ := body["unstable_features"].(map[string]any); uf["org.matrix.msc3916.stable"] != true {
		t.Fatalf("authenticated media not announced: %v", body["unstable_features"])
	}
	if resp.Header.Get("X-Request-Id") == "" || resp.Header.Get("Access-Control-Allow-Origin") != "*" {
		t.Fatalf("missing request ID or CORS headers: %v", resp.Header)
	}
	if resp, _ := p.do("GET", "/health", nil); resp.StatusCode != 200 {
		t.Fatalf("health: %d", resp.StatusCode)
	}
	if resp, body := p.do("GET", "/_matrix/client/v3/nonsense?access_token=secret-token", nil); resp.StatusCode != 404 || body["errcode"] != "M_UNRECOGNIZED" {
		t.Fatalf("unknown endpoint: %d %v", resp.StatusCode, body)
	}
	if resp, body := p.do("POST", "/_matrix/client/versions", nil); resp.StatusCode != 405 || body["errcode"] != "M_UNRECOGNIZED" {
		t.Fatalf("wrong method: %d %v", resp.StatusCode, body)
	}
	big := bytes.Repeat([]byte("a"), 2<<20)
	if resp, body := p.do("POST", "/_matrix/client/versions", bytes.NewReader(big)); resp.StatusCode != 413 || body["errcode"] != "M_TOO_LARGE" {
		t.Fatalf("oversized body: %d %v", resp.StatusCode, body)
	}
	if resp, _ := p.do("OPTIONS", "/_matrix/client/v3/login", nil); resp.StatusCode != 200 || resp.Header.Get("Access-Control-Allow-Methods") == "" {
		t.Fatalf("CORS preflight: %d %v", resp.StatusCode, resp.Header)
	}

	// The federation listener speaks TLS with the generated certificate.
	tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
	fresp, err := (&http.Client{Transport: tr}).Get("https://" + p.fedAddr + "/_matrix/federation/v1/version")
	if err != nil {
		t.Fatal(err)
	}
	var ver map[string]map[string]string
	_ = json.NewDecoder(fresp.Body).Decode(&ver)
	fresp.Body.Close()
	if fresp.StatusCode != 200 || ver["server"]["name"] != "Parley" {
		t.Fatalf("federation version: %d %v", fresp.StatusCode, ver)
	}
	if cn := fresp.TLS.PeerCertificates[0].Subject.CommonName; cn != "localhost" {
		t.Fatalf("certificate for %q, want localhost", cn)
	}

	if err := p.stop(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM: exit %v, want 0\n%s", err, p.logs)
	}
	logs := p.logs.String()
	if !strings.Contains(logs, `"path":"/_matrix/client/v3/nonsense?access_token=%3Credacted%3E"`) || strings.Contains(logs, "secret-token") {
		t.Fatalf("access log must show the path with the token redacted:\n%s", logs)
	}
	if !strings.Contains(logs, "register-user") {
		t.Fatalf("start-up does not say how to register the first user:\n%s", logs)
	}

	// A second start reuses the key, certificate and database.
	p = start(t, work, env)
	key2, _ := os.ReadFile(filepath.Join(data, "signing.key"))
	cert2, _ := os.ReadFile(filepath.Join(data, "tls.crt"))
	if !bytes.Equal(key1, key2) || !bytes.Equal(cert1, cert2) {
		t.Fatal("second start replaced the signing key or certificate")
	}
	if err := p.stop(syscall.SIGINT); err != nil {
		t.Fatalf("SIGINT: exit %v, want 0\n%s", err, p.logs)
	}
}

func TestRegisterUserAndKill9(t *testing.T) {
	engines := storagetest.Engines(t)
	for _, e := range engines {
		t.Run(e.Name, func(t *testing.T) {
			work := t.TempDir()
			data := filepath.Join(work, "data")
			env := baseEnv(data, "PARLEY_DATABASE="+e.DSN)
			p := start(t, work, env) // creates the config and database
			cfg := filepath.Join(data, "parley.yaml")

			out, err := runCmd(t, work, env, "register-user", "--config", cfg, "--user", "alice", "--password", "pw", "--admin")
			if err != nil || !strings.Contains(out, "registered @alice:localhost") {
				t.Fatalf("register-user: %v\n%s", err, out)
			}
			// kill -9 while running: committed data survives and the next
			// start opens the database.
			if err := p.stop(syscall.SIGKILL); err == nil {
				t.Fatal("kill -9 reported a clean exit")
			}
			p = start(t, work, env)
			out, err = runCmd(t, work, env, "register-user", "--config", cfg, "--user", "alice", "--password", "pw")
			if err == nil || !strings.Contains(out, "already taken") {
				t.Fatalf("second registration of alice: %v\n%s", err, out)
			}
			out, err = runCmd(t, work, env, "register-user", "--config", cfg, "--user", "Bad:Name", "--password", "pw")
			if err == nil || !strings.Contains(out, "invalid username") {
				t.Fatalf("invalid username: %v\n%s", err, out)
			}
			if err := p.stop(syscall.SIGTERM); err != nil {
				t.Fatalf("SIGTERM: %v", err)
			}
		})
	}
}

func TestBadConfigStopsStartup(t *testing.T) {
	work := t.TempDir()
	cfg := filepath.Join(work, "parley.yaml")
	if err := os.WriteFile(cfg, []byte("server_name: example.org\nregistration:\n  enabeld: true\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := runCmd(t, work, baseEnv(work), "run", "--config", cfg)
	if err == nil {
		t.Fatal("started with an unknown key")
	}
	if strings.Count(strings.TrimSpace(out), "\n") != 0 || !strings.Contains(out, "registration.enabeld") || strings.Contains(out, "goroutine") {
		t.Fatalf("want one clear line naming the key, got:\n%s", out)
	}
	if err := os.WriteFile(cfg, []byte("server_name: example.org\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err = runCmd(t, work, baseEnv(work, "PARLEY_DATABASE_POOL_MAX_OPEN_CONNS=many"), "run", "--config", cfg)
	if err == nil || !strings.Contains(out, "PARLEY_DATABASE_POOL_MAX_OPEN_CONNS") {
		t.Fatalf("bad environment value: %v\n%s", err, out)
	}
}

func TestGenerateConfigAndVersion(t *testing.T) {
	work := t.TempDir()
	out, err := runCmd(t, work, baseEnv(work), "generate-config", "--server-name", "matrix.example.org")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	p := filepath.Join(work, "gen.yaml")
	_ = os.WriteFile(p, []byte(out), 0o600)
	c, err := config.Load(p, nil)
	if err != nil || c.ServerName != "matrix.example.org" {
		t.Fatalf("generated config: %+v %v", c, err)
	}
	if out, err := runCmd(t, work, nil, "generate-config"); err == nil {
		t.Fatalf("generate-config without --server-name succeeded:\n%s", out)
	}
	if out, err := runCmd(t, work, nil, "version"); err != nil || !strings.HasPrefix(out, "parley ") {
		t.Fatalf("version: %v %s", err, out)
	}
	if _, err := runCmd(t, work, nil, "frobnicate"); err == nil {
		t.Fatal("unknown command succeeded")
	}
}

package federation_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
	"maunium.net/go/mautrix"
	mevent "maunium.net/go/mautrix/event"
	mid "maunium.net/go/mautrix/id"

	"github.com/parley-chat/parley/homeserver/config"
	"github.com/parley-chat/parley/homeserver/hstest"
	"github.com/parley-chat/parley/homeserver/keys"
)

// Interoperability with a homeserver we did not write: Dendrite, built
// from the Go module proxy (cached between runs), federating with a Parley
// server on loopback.

const dendriteVersion = "v0.13.8"

// dendriteBinaries builds Dendrite's binaries once and caches them under
// the user's cache directory; it skips the test when the module proxy
// cannot be reached.
func dendriteBinaries(t *testing.T) string {
	t.Helper()
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	dir := filepath.Join(cache, "parley-dendrite", dendriteVersion)
	names := []string{"dendrite", "generate-config", "generate-keys"}
	have := true
	for _, n := range names {
		if _, err := os.Stat(filepath.Join(dir, n)); err != nil {
			have = false
		}
	}
	if have {
		return dir
	}
	// Build into a fresh directory and move it in place whole, so that a
	// run that is interrupted, or another running at the same time, never
	// sees half a set.
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		t.Fatal(err)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), "build-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	args := []string{"install"}
	for _, n := range names {
		args = append(args, "github.com/matrix-org/dendrite/cmd/"+n+"@"+dendriteVersion)
	}
	cmd := exec.CommandContext(ctx, "go", args...)
	// Outside our module, so that nothing of ours (go.mod, workspaces)
	// is involved.
	cmd.Dir = tmp
	cmd.Env = append(os.Environ(), "GOBIN="+filepath.Join(tmp, "bin"), "GOWORK=off", "GOFLAGS=-mod=mod")
	start := time.Now()
	out, err := cmd.CombinedOutput()
	if err != nil {
		msg := string(out)
		for _, sign := range []string{"dial tcp", "no such host", "i/o timeout", "connection refused", "proxy", "TLS handshake",
			"network is unreachable", "Get \"https://", "context deadline exceeded", "verifying module", "lookup "} {
			if strings.Contains(msg, sign) || ctx.Err() != nil {
				t.Skipf("Dendrite %s cannot be fetched from the module proxy, skipping the interoperability test: %v\n%s", dendriteVersion, err, tail(msg, 2000))
			}
		}
		t.Fatalf("building Dendrite %s: %v\n%s", dendriteVersion, err, tail(msg, 4000))
	}
	t.Logf("built Dendrite %s in %s (cached in %s)", dendriteVersion, time.Since(start).Round(time.Second), dir)
	if err := os.Rename(filepath.Join(tmp, "bin"), dir); err != nil {
		if _, statErr := os.Stat(filepath.Join(dir, "dendrite")); statErr != nil {
			t.Fatal(err)
		}
		// Another run put its build there first: as good as ours.
	}
	return dir
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// dendrite is a running Dendrite server.
type dendrite struct {
	name      string
	clientURL string
	fedAddr   string
	secret    string
	log       string
}

// startDendrite configures and runs Dendrite as server name name, with a
// federation certificate from the test network's CA and SQLite databases
// in a temporary directory, until the test ends.
func startDendrite(t *testing.T, bin string, n *testNet, name string, staticHosts map[string]string) *dendrite {
	t.Helper()
	dir := t.TempDir()
	run := func(prog string, args ...string) {
		t.Helper()
		out, err := exec.Command(filepath.Join(bin, prog), args...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s %v: %v\n%s", prog, args, err, out)
		}
	}
	run("generate-keys", "--private-key", filepath.Join(dir, "matrix_key.pem"))
	cert, key := filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key")
	if _, err := keys.IssueFromCA(n.CACert, n.CAKey, cert, key, name); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(filepath.Join(bin, "generate-config"), "-ci", "-dir", dir, "-server", name).Output()
	if err != nil {
		t.Fatalf("generate-config: %v", err)
	}
	var cfg map[string]any
	if err := yaml.Unmarshal(out, &cfg); err != nil {
		t.Fatal(err)
	}
	d := &dendrite{name: name, fedAddr: hstest.FreeAddr(t), secret: "parley-interop-secret", log: filepath.Join(dir, "dendrite.log")}
	httpAddr := hstest.FreeAddr(t)
	d.clientURL = "http://" + httpAddr
	set := func(path string, v any) {
		parts := strings.Split(path, ".")
		m := cfg
		for _, p := range parts[:len(parts)-1] {
			next, ok := m[p].(map[string]any)
			if !ok {
				next = map[string]any{}
				m[p] = next
			}
			m = next
		}
		m[parts[len(parts)-1]] = v
	}
	set("global.private_key", filepath.Join(dir, "matrix_key.pem"))
	set("global.trusted_third_party_id_servers", []string{})
	set("global.server_notices.enabled", false)
	set("global.presence.enable_inbound", false)
	set("global.presence.enable_outbound", false)
	set("client_api.registration_shared_secret", d.secret)
	set("client_api.registration_disabled", true) // the shared-secret API still works
	set("client_api.rate_limiting.enabled", false)
	// Our test CA is not in its trust store; on loopback, in a test, not
	// checking the certificate is acceptable.
	set("federation_api.disable_tls_validation", true)
	set("federation_api.key_perspectives", []any{})
	set("federation_api.prefer_direct_fetch", true)
	set("sync_api.search.enabled", false)
	set("mscs.mscs", []string{})
	set("logging", []any{map[string]any{"type": "std", "level": "info"}})
	raw, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "dendrite.yaml")
	if err := os.WriteFile(cfgPath, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	logFile, err := os.Create(d.log)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(bin, "dendrite"), "-config", cfgPath,
		"-http-bind-address", httpAddr, "-https-bind-address", d.fedAddr, "-tls-cert", cert, "-tls-key", key)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	var exitErr error
	go func() { exitErr = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		logFile.Close()
		if t.Failed() {
			data, _ := os.ReadFile(d.log)
			t.Logf("Dendrite's log:\n%s", tail(string(data), 8000))
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(d.clientURL + "/_matrix/client/versions")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		select {
		case <-exited:
			data, _ := os.ReadFile(d.log)
			t.Fatalf("Dendrite exited: %v\n%s", exitErr, tail(string(data), 4000))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("Dendrite did not start within 60s")
		}
		time.Sleep(200 * time.Millisecond)
	}
	return d
}

// register creates a Dendrite user through the shared-secret admin API and
// returns a logged-in client.
func (d *dendrite) register(t *testing.T, user string) *mautrix.Client {
	t.Helper()
	var nonce struct {
		Nonce string `json:"nonce"`
	}
	resp, err := http.Get(d.clientURL + "/_synapse/admin/v1/register")
	if err != nil {
		t.Fatal(err)
	}
	_ = json.NewDecoder(resp.Body).Decode(&nonce)
	resp.Body.Close()
	password := "password-of-" + user // Dendrite wants 8 characters or more
	mac := hmac.New(sha1.New, []byte(d.secret))
	mac.Write([]byte(nonce.Nonce + "\x00" + user + "\x00" + password + "\x00notadmin"))
	body, _ := json.Marshal(map[string]any{"nonce": nonce.Nonce, "username": user, "password": password, "admin": false,
		"mac": hex.EncodeToString(mac.Sum(nil))})
	resp, err = http.Post(d.clientURL+"/_synapse/admin/v1/register", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	data, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var reg struct {
		UserID      string `json:"user_id"`
		AccessToken string `json:"access_token"`
	}
	if resp.StatusCode != 200 || json.Unmarshal(data, &reg) != nil || reg.AccessToken == "" {
		t.Fatalf("registering %s on Dendrite: %d %s", user, resp.StatusCode, data)
	}
	cli, err := mautrix.NewClient(d.clientURL, mid.UserID(reg.UserID), reg.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	return cli
}

func TestDendriteInterop(t *testing.T) {
	if testing.Short() {
		t.Skip("the Dendrite interoperability test builds and runs Dendrite: not with -short")
	}
	bin := dendriteBinaries(t)
	n := newTestNet(t)
	// Dendrite finds servers through DNS and .well-known, which a test
	// cannot set up; a server name that is an IP literal with a port is
	// reached directly, so Parley goes by its federation address.
	parleyName := hstest.FreeAddr(t)
	d := startDendrite(t, bin, n, "dendrite.test", nil)
	hs := hstest.Start(t, hstest.Options{
		ServerName: parleyName,
		Configure: func(c *config.Config) {
			noLimits(c)
			c.ListenFederation = parleyName
			c.TLS.CACert, c.TLS.CAKey = n.CACert, n.CAKey
			c.Federation.CAFiles = []string{n.CACert}
			c.Federation.StaticHosts = map[string]string{"dendrite.test": d.fedAddr}
		},
	})
	ctx := context.Background()
	alice := fedUser(t, hs, "alice")
	dave := d.register(t, "dave")
	aliceSync := &syncer{t: t, cli: alice}
	daveSync := &syncer{t: t, cli: dave}
	aliceSync.waitFor("initial", func(*mautrix.RespSync) bool { return true })
	daveSync.waitFor("initial", func(*mautrix.RespSync) bool { return true })

	t.Run("a Parley user joins a Dendrite room", func(t *testing.T) {
		room, err := dave.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat", Name: "Dendrite's room"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := dave.SendText(ctx, room.RoomID, "history on dendrite"); err != nil {
			t.Fatal(err)
		}
		if _, err := alice.JoinRoom(ctx, room.RoomID.String(), &mautrix.ReqJoinRoom{Via: []string{"dendrite.test"}}); err != nil {
			t.Fatalf("Parley joining a Dendrite room: %v", err)
		}
		waitMembership(t, dave, room.RoomID, alice.UserID, "join")
		if _, err := dave.SendText(ctx, room.RoomID, "hello from dendrite"); err != nil {
			t.Fatal(err)
		}
		aliceSync.waitFor("dave's message", hasMessage(room.RoomID, "hello from dendrite"))
		if _, err := alice.SendText(ctx, room.RoomID, "hello from parley"); err != nil {
			t.Fatal(err)
		}
		daveSync.waitFor("alice's message", hasMessage(room.RoomID, "hello from parley"))
		// History from before alice's join, backfilled from Dendrite.
		if err := hasBodies(bodies(pageBack(t, alice, room.RoomID, 10)), []string{"history on dendrite", "hello from dendrite"}); err != nil {
			t.Errorf("backfill from Dendrite: %v", err)
		}
	})

	for _, version := range []string{"10", "11"} {
		t.Run("a Dendrite user joins a Parley room of version "+version, func(t *testing.T) {
			room, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat", Name: "Parley's room", RoomVersion: mid.RoomVersion(version)})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := alice.SendText(ctx, room.RoomID, "history on parley"); err != nil {
				t.Fatal(err)
			}
			if _, err := dave.JoinRoom(ctx, room.RoomID.String(), &mautrix.ReqJoinRoom{Via: []string{parleyName}}); err != nil {
				t.Fatalf("Dendrite joining a Parley room: %v", err)
			}
			waitMembership(t, alice, room.RoomID, dave.UserID, "join")
			if _, err := alice.SendText(ctx, room.RoomID, "parley speaking, v"+version); err != nil {
				t.Fatal(err)
			}
			daveSync.waitFor("alice's message", hasMessage(room.RoomID, "parley speaking, v"+version))
			if _, err := dave.SendText(ctx, room.RoomID, "dendrite answering, v"+version); err != nil {
				t.Fatal(err)
			}
			aliceSync.waitFor("dave's message", hasMessage(room.RoomID, "dendrite answering, v"+version))
			// Dendrite backfills the history from us.
			msgs, err := dave.Messages(ctx, room.RoomID, "", "", mautrix.DirectionBackward, nil, 50)
			if err != nil {
				t.Fatal(err)
			}
			if err := hasBodies(bodies(reverse(msgs.Chunk)), []string{"history on parley"}); err != nil {
				t.Errorf("Dendrite's backfill from Parley: %v", err)
			}
		})
	}

	t.Run("a room version Dendrite does not support", func(t *testing.T) {
		room, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat", RoomVersion: "12"})
		if err != nil {
			t.Fatal(err)
		}
		_, err = dave.JoinRoom(ctx, room.RoomID.String(), &mautrix.ReqJoinRoom{Via: []string{parleyName}})
		var he mautrix.HTTPError
		if err == nil {
			t.Log("Dendrite joined a version 12 room")
		} else if !errors.As(err, &he) {
			t.Fatalf("joining a v12 room: %v", err)
		} else {
			t.Logf("Dendrite refuses version 12, as expected of %s: %v", dendriteVersion, err)
		}
	})

	t.Run("space hierarchies both ways", func(t *testing.T) {
		create := func(cli *mautrix.Client, name string, space bool) mid.RoomID {
			t.Helper()
			req := &mautrix.ReqCreateRoom{Preset: "public_chat", Name: name, RoomVersion: "10"}
			if space {
				req.CreationContent = map[string]any{"type": "m.space"}
			}
			resp, err := cli.CreateRoom(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			return resp.RoomID
		}
		child := func(cli *mautrix.Client, space, room mid.RoomID, via string) {
			t.Helper()
			if _, err := cli.SendStateEvent(ctx, space, mevent.StateSpaceChild, room.String(), map[string]any{"via": []string{via}}); err != nil {
				t.Fatal(err)
			}
		}
		// Dendrite's space holds a room of each server; Parley, in the
		// space, asks Dendrite about Dendrite's room.
		dspace, droom, proom := create(dave, "DS", true), create(dave, "DR", false), create(alice, "PR", false)
		child(dave, dspace, droom, "dendrite.test")
		child(dave, dspace, proom, parleyName)
		if _, err := alice.JoinRoom(ctx, dspace.String(), &mautrix.ReqJoinRoom{Via: []string{"dendrite.test"}}); err != nil {
			t.Fatal(err)
		}
		eventually(t, 20*time.Second, "Dendrite's space on Parley", func() error {
			if got := spaceNames(t, alice, dspace); got != "DR DS PR" {
				return fmt.Errorf("alice sees %q", got)
			}
			return nil
		})
		// Parley's space the same way round: Dendrite asks Parley.
		pspace, proom2, droom2 := create(alice, "PS", true), create(alice, "PR2", false), create(dave, "DR2", false)
		child(alice, pspace, proom2, parleyName)
		child(alice, pspace, droom2, "dendrite.test")
		if _, err := dave.JoinRoom(ctx, pspace.String(), &mautrix.ReqJoinRoom{Via: []string{parleyName}}); err != nil {
			t.Fatal(err)
		}
		eventually(t, 20*time.Second, "Parley's space on Dendrite", func() error {
			if got := spaceNames(t, dave, pspace); got != "DR2 PR2 PS" {
				return fmt.Errorf("dave sees %q", got)
			}
			return nil
		})
	})

	t.Run("restricted joins both ways", func(t *testing.T) {
		withRule := func(cli *mautrix.Client, rule map[string]any) mid.RoomID {
			t.Helper()
			resp, err := cli.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "private_chat", RoomVersion: "10",
				InitialState: []*mevent.Event{{Type: mevent.StateJoinRules, Content: mevent.Content{Raw: rule}}}})
			if err != nil {
				t.Fatal(err)
			}
			return resp.RoomID
		}
		// Dendrite v0.13.8 has no knocking (its client API answers /knock
		// with M_UNRECOGNIZED), so knocks are tested between Parley servers
		// only (knock_test.go).
		for _, c := range []struct {
			name         string
			owner, guest *mautrix.Client
			ownerServer  string
		}{
			{"a Dendrite user joins a restricted Parley room", alice, dave, parleyName},
			{"a Parley user joins a restricted Dendrite room", dave, alice, "dendrite.test"},
		} {
			lobby, err := c.owner.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat", RoomVersion: "10"})
			if err != nil {
				t.Fatal(err)
			}
			room := withRule(c.owner, map[string]any{"join_rule": "restricted",
				"allow": []any{map[string]any{"type": "m.room_membership", "room_id": lobby.RoomID.String()}}})
			if _, err := c.guest.JoinRoom(ctx, room.String(), &mautrix.ReqJoinRoom{Via: []string{c.ownerServer}}); err == nil {
				t.Fatalf("%s: joined without being in the allowed room", c.name)
			}
			if _, err := c.guest.JoinRoom(ctx, lobby.RoomID.String(), &mautrix.ReqJoinRoom{Via: []string{c.ownerServer}}); err != nil {
				t.Fatal(err)
			}
			if _, err := c.guest.JoinRoom(ctx, room.String(), &mautrix.ReqJoinRoom{Via: []string{c.ownerServer}}); err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
			waitMembership(t, c.owner, room, c.guest.UserID, "join")
		}
	})

	t.Run("invites both ways", func(t *testing.T) {
		room, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "private_chat", RoomVersion: "10"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := alice.InviteUser(ctx, room.RoomID, &mautrix.ReqInviteUser{UserID: dave.UserID}); err != nil {
			t.Fatalf("inviting a Dendrite user: %v", err)
		}
		daveSync.waitFor("the invite", func(r *mautrix.RespSync) bool { _, ok := r.Rooms.Invite[room.RoomID]; return ok })
		if _, err := dave.JoinRoom(ctx, room.RoomID.String(), nil); err != nil {
			t.Fatalf("Dendrite accepting a Parley invite: %v", err)
		}
		waitMembership(t, alice, room.RoomID, dave.UserID, "join")

		droom, err := dave.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "private_chat"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := dave.InviteUser(ctx, droom.RoomID, &mautrix.ReqInviteUser{UserID: alice.UserID}); err != nil {
			t.Fatalf("Dendrite inviting a Parley user: %v", err)
		}
		aliceSync.waitFor("dave's invite", func(r *mautrix.RespSync) bool { _, ok := r.Rooms.Invite[droom.RoomID]; return ok })
		if _, err := alice.JoinRoom(ctx, droom.RoomID.String(), nil); err != nil {
			t.Fatalf("accepting a Dendrite invite: %v", err)
		}
		waitMembership(t, dave, droom.RoomID, alice.UserID, "join")
	})
}

// spaceNames lists the names of the rooms cli's server shows in a space.
func spaceNames(t *testing.T, cli *mautrix.Client, space mid.RoomID) string {
	t.Helper()
	resp, err := cli.Hierarchy(context.Background(), space, &mautrix.ReqHierarchy{})
	if err != nil {
		t.Fatalf("%s: /hierarchy: %v", cli.UserID, err)
	}
	var names []string
	for _, r := range resp.Rooms {
		names = append(names, r.Name)
	}
	sort.Strings(names)
	return strings.Join(names, " ")
}

func reverse[T any](s []T) []T {
	out := make([]T, len(s))
	for i, v := range s {
		out[len(s)-1-i] = v
	}
	return out
}

package users

import (
	"context"
	"errors"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/parley-chat/parley/storage"
	"github.com/parley-chat/parley/storage/storagetest"
)

func TestMain(m *testing.M) {
	UseMinimumBcryptCostForTests()
	os.Exit(m.Run())
}

type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// eachEngine runs fn with a service on a fresh database of each engine and
// a clock the test controls.
func eachEngine(t *testing.T, fn func(t *testing.T, s *Service, clock *testClock)) {
	for _, e := range storagetest.Engines(t) {
		t.Run(e.Name, func(t *testing.T) {
			db, err := storage.Open(context.Background(), e.DSN, storage.Pool{MaxOpenConns: 8})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			s := New(db, "example.org")
			clock := &testClock{t: time.Unix(1_700_000_000, 0)}
			s.now = clock.now
			fn(t, s, clock)
		})
	}
}

func mustCreate(t *testing.T, s *Service, name, password string) *Device {
	t.Helper()
	sess, err := s.CreateAccount(context.Background(), NewAccount{Username: name, Password: password, Device: &DeviceParams{}})
	if err != nil {
		t.Fatal(err)
	}
	dev, err := s.Authenticate(context.Background(), sess.AccessToken, "")
	if err != nil {
		t.Fatal(err)
	}
	return dev
}

func TestUserInteractiveAuth(t *testing.T) {
	ctx := context.Background()
	eachEngine(t, func(t *testing.T, s *Service, clock *testClock) {
		dev := mustCreate(t, s, "alice", "secret")
		mustCreate(t, s, "bob", "bobsecret")
		req := func(auth *AuthData) UIARequest {
			return UIARequest{Action: "POST /account/password", Localpart: "alice", Flows: PasswordFlows, Auth: auth}
		}
		password := func(session, user, pw string) *AuthData {
			return &AuthData{Type: AuthTypePassword, Session: session, Identifier: &Identifier{Type: "m.id.user", User: user}, Password: pw}
		}

		// No auth: a challenge with a session, no error.
		ch, err := s.UserInteractiveAuth(ctx, req(nil))
		if err != nil || ch == nil || ch.Session == "" || ch.ErrCode != "" || len(ch.Flows) != 1 || ch.Params == nil {
			t.Fatalf("first challenge %+v, %v", ch, err)
		}
		session := ch.Session

		// Wrong password, another user's password, a stage not offered.
		for _, auth := range []*AuthData{
			password(session, "alice", "wrong"),
			password(session, "@bob:example.org", "bobsecret"),
			{Type: AuthTypeDummy, Session: session},
		} {
			ch, err = s.UserInteractiveAuth(ctx, req(auth))
			if err != nil || ch == nil || ch.ErrCode != "M_FORBIDDEN" || ch.Session != session {
				t.Fatalf("bad attempt %+v: %+v, %v", auth, ch, err)
			}
		}
		// A third-party identifier cannot name anyone here.
		ch, _ = s.UserInteractiveAuth(ctx, req(&AuthData{Type: AuthTypePassword, Session: session,
			Identifier: &Identifier{Type: "m.id.thirdparty", Medium: "email", Address: "a@b.c"}, Password: "secret"}))
		if ch == nil || ch.ErrCode != "M_FORBIDDEN" {
			t.Fatalf("third-party identifier: %+v", ch)
		}

		// The session is bound to its action and user.
		other := UIARequest{Action: "POST /account/deactivate", Localpart: "alice", Flows: PasswordFlows, Auth: password(session, "alice", "secret")}
		if ch, _ := s.UserInteractiveAuth(ctx, other); ch == nil || ch.Session == session {
			t.Fatalf("session reused for another action: %+v", ch)
		}

		// The right password completes it, with the full user ID, without
		// identifier (the logged-in user), or by the legacy user field.
		if ch, err := s.UserInteractiveAuth(ctx, req(password(session, "@alice:example.org", "secret"))); err != nil || ch != nil {
			t.Fatalf("right password: %+v, %v", ch, err)
		}
		// ... which uses the session up.
		ch, _ = s.UserInteractiveAuth(ctx, req(password(session, "alice", "secret")))
		if ch == nil || ch.Session == session || ch.ErrCode != "" {
			t.Fatalf("used-up session: %+v", ch)
		}
		if ch, _ := s.UserInteractiveAuth(ctx, req(&AuthData{Type: AuthTypePassword, Session: ch.Session, Password: "secret"})); ch != nil {
			t.Fatalf("password without identifier: %+v", ch)
		}
		if ch, _ := s.UserInteractiveAuth(ctx, req(&AuthData{Type: AuthTypePassword, User: "alice", Password: "secret"})); ch != nil {
			t.Fatalf("legacy user field without a session: %+v", ch)
		}

		// Sessions expire.
		ch, _ = s.UserInteractiveAuth(ctx, req(nil))
		clock.advance(uiaSessionTTL + time.Second)
		if ch2, _ := s.UserInteractiveAuth(ctx, req(password(ch.Session, "alice", "secret"))); ch2 == nil || ch2.Session == ch.Session {
			t.Fatalf("expired session accepted: %+v", ch2)
		}

		// Dummy registration flow, started without a user.
		reg := UIARequest{Action: "POST /register", Flows: DummyFlows}
		ch, _ = s.UserInteractiveAuth(ctx, reg)
		reg.Auth = &AuthData{Type: AuthTypeDummy, Session: ch.Session}
		if ch, err := s.UserInteractiveAuth(ctx, reg); ch != nil || err != nil {
			t.Fatalf("dummy stage: %+v, %v", ch, err)
		}
		_ = dev
	})
}

func TestMultiStageFlows(t *testing.T) {
	ctx := context.Background()
	eachEngine(t, func(t *testing.T, s *Service, _ *testClock) {
		mustCreate(t, s, "alice", "secret")
		flows := []Flow{{Stages: []string{AuthTypeDummy, AuthTypePassword}}}
		req := UIARequest{Action: "X", Localpart: "alice", Flows: flows}
		ch, _ := s.UserInteractiveAuth(ctx, req)
		sess := ch.Session
		// Out of order.
		req.Auth = &AuthData{Type: AuthTypePassword, Session: sess, Password: "secret"}
		if ch, _ := s.UserInteractiveAuth(ctx, req); ch == nil || ch.ErrCode != "M_FORBIDDEN" || len(ch.Completed) != 0 {
			t.Fatalf("stage out of order: %+v", ch)
		}
		req.Auth = &AuthData{Type: AuthTypeDummy, Session: sess}
		ch, _ = s.UserInteractiveAuth(ctx, req)
		if ch == nil || ch.ErrCode != "" || len(ch.Completed) != 1 || ch.Completed[0] != AuthTypeDummy {
			t.Fatalf("after first stage: %+v", ch)
		}
		// Retrying a completed stage is answered with the progress so far.
		if ch, _ := s.UserInteractiveAuth(ctx, req); ch == nil || ch.ErrCode != "" || len(ch.Completed) != 1 {
			t.Fatalf("retried stage: %+v", ch)
		}
		// Asking about the session (no type) neither fails nor completes it.
		req.Auth = &AuthData{Session: sess}
		if ch, _ := s.UserInteractiveAuth(ctx, req); ch == nil || len(ch.Completed) != 1 {
			t.Fatalf("status query: %+v", ch)
		}
		req.Auth = &AuthData{Type: AuthTypePassword, Session: sess, Password: "secret"}
		if ch, err := s.UserInteractiveAuth(ctx, req); ch != nil || err != nil {
			t.Fatalf("last stage: %+v, %v", ch, err)
		}
	})
}

func TestTokenCache(t *testing.T) {
	ctx := context.Background()
	eachEngine(t, func(t *testing.T, s *Service, clock *testClock) {
		sess, err := s.CreateAccount(ctx, NewAccount{Username: "alice", Password: "pw", Device: &DeviceParams{DeviceID: "A"}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Authenticate(ctx, sess.AccessToken, "10.0.0.1"); err != nil {
			t.Fatal(err)
		}
		if s.tokens.len() != 1 {
			t.Fatalf("%d tokens cached, want 1", s.tokens.len())
		}
		// A token revoked behind the cache's back (by another process)
		// stops working once its entry expires.
		if _, err := s.db.DeleteDevices(ctx, "alice", []string{"A"}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Authenticate(ctx, sess.AccessToken, ""); err != nil {
			t.Fatalf("cached token refused before expiry: %v", err)
		}
		clock.advance(tokenCacheTTL + time.Second)
		if _, err := s.Authenticate(ctx, sess.AccessToken, ""); !errors.Is(err, ErrUnknownToken) {
			t.Fatalf("revoked token after expiry: %v", err)
		}

		// Through the service, revocation is immediate.
		sess, _ = s.Login(ctx, "alice", DeviceParams{DeviceID: "B"})
		dev, _ := s.Authenticate(ctx, sess.AccessToken, "")
		if err := s.Logout(ctx, dev); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Authenticate(ctx, sess.AccessToken, ""); !errors.Is(err, ErrUnknownToken) {
			t.Fatalf("logged-out token: %v", err)
		}
		// Logging in again on a device revokes its earlier token.
		s1, _ := s.Login(ctx, "alice", DeviceParams{DeviceID: "C"})
		s.Authenticate(ctx, s1.AccessToken, "")
		s2, _ := s.Login(ctx, "alice", DeviceParams{DeviceID: "C"})
		if _, err := s.Authenticate(ctx, s1.AccessToken, ""); !errors.Is(err, ErrUnknownToken) {
			t.Fatalf("replaced token: %v", err)
		}
		if _, err := s.Authenticate(ctx, s2.AccessToken, ""); err != nil {
			t.Fatal(err)
		}

		// A look-up racing an invalidation does not cache the stale answer.
		gen := s.tokens.generation()
		s.tokens.invalidateUser("nobody")
		var h [32]byte
		s.tokens.put(h, Device{Localpart: "x"}, clock.now(), gen)
		if _, _, ok := s.tokens.get(h, clock.now()); ok {
			t.Fatal("entry cached across an invalidation")
		}
	})
}

func TestLastSeen(t *testing.T) {
	ctx := context.Background()
	eachEngine(t, func(t *testing.T, s *Service, clock *testClock) {
		sess, _ := s.CreateAccount(ctx, NewAccount{Username: "alice", Password: "pw", Device: &DeviceParams{IP: "10.0.0.1"}})
		dev, _ := s.Authenticate(ctx, sess.AccessToken, "10.0.0.2")
		d, _ := s.GetDevice(ctx, dev, dev.DeviceID)
		if d.LastSeenIP != "10.0.0.1" { // registered just now: not written again
			t.Fatalf("last seen %+v", d)
		}
		clock.advance(touchEvery)
		s.Authenticate(ctx, sess.AccessToken, "10.0.0.3")
		d, _ = s.GetDevice(ctx, dev, dev.DeviceID)
		if d.LastSeenIP != "10.0.0.3" || d.LastSeenTS != clock.now().UnixMilli() {
			t.Fatalf("last seen not updated: %+v", d)
		}
	})
}

func TestHooks(t *testing.T) {
	ctx := context.Background()
	eachEngine(t, func(t *testing.T, s *Service, _ *testClock) {
		var got []string
		s.SetHooks(Hooks{
			OnProfileChange:   func(_ context.Context, u, n, a string) { got = append(got, "profile "+u+" "+n+" "+a) },
			OnDeactivate:      func(_ context.Context, u string) { got = append(got, "deactivate "+u) },
			OnDevicesDeleted:  func(_ context.Context, u string, ids []string) { got = append(got, "devices "+u+" "+ids[0]) },
			NotifyAccountData: func(u string) { got = append(got, "account data "+u) },
		})
		sess, _ := s.CreateAccount(ctx, NewAccount{Username: "alice", Password: "pw", Device: &DeviceParams{DeviceID: "D"}})
		dev, _ := s.Authenticate(ctx, sess.AccessToken, "")
		s.SetDisplayName(ctx, dev, "Alice")
		s.SetAvatarURL(ctx, dev, "mxc://example.org/abc")
		s.SetAccountData(ctx, dev, "", "m.direct", []byte(`{}`))
		s.SetTag(ctx, dev, "!r:example.org", "u.work", []byte(`{}`))
		s.SetTag(ctx, dev, "!r:example.org", "u.work", []byte(`{}`)) // unchanged: no notification
		s.Deactivate(ctx, dev, false)
		want := []string{
			"profile @alice:example.org Alice ",
			"profile @alice:example.org Alice mxc://example.org/abc",
			"account data @alice:example.org",
			"account data @alice:example.org",
			"devices @alice:example.org D",
			"deactivate @alice:example.org",
		}
		if len(got) != len(want) {
			t.Fatalf("hooks called %q, want %q", got, want)
		}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("hooks called %q, want %q", got, want)
			}
		}
	})
}

func TestSharedSecretMAC(t *testing.T) {
	// Vectors computed independently (Python's hmac module) over
	// nonce NUL user NUL password NUL admin|notadmin [NUL user_type].
	if got := RegistrationMAC("secret", "abc", "alice", "pw", true, ""); got != "dc5ed98b283077684552e3f72d67f26b3366bf58" {
		t.Fatalf("admin MAC %s", got)
	}
	if got := RegistrationMAC("secret", "abc", "alice", "pw", false, "bot"); got != "24aa4ce0a91cc14c8d7b06e2c344d3d698805c6e" {
		t.Fatalf("user type MAC %s", got)
	}
}

// BenchmarkAuthenticate measures the access token check every request
// makes, with and without the cache.
func BenchmarkAuthenticate(b *testing.B) {
	for _, e := range storagetest.Engines(b) {
		b.Run(e.Name, func(b *testing.B) {
			ctx := context.Background()
			db, err := storage.Open(ctx, e.DSN, storage.Pool{MaxOpenConns: 8})
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			s := New(db, "example.org")
			sess, err := s.CreateAccount(ctx, NewAccount{Username: "alice", Password: "pw", Device: &DeviceParams{}})
			if err != nil {
				b.Fatal(err)
			}
			b.Run("cached", func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					if _, err := s.Authenticate(ctx, sess.AccessToken, ""); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("database", func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					s.tokens.invalidateUser("alice")
					if _, err := s.Authenticate(ctx, sess.AccessToken, ""); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}

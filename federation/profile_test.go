package federation_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/url"
	"testing"

	"maunium.net/go/mautrix"
)

// TestRemoteProfile: alice on hs1 reads the profile of bob on hs2.
func TestRemoteProfile(t *testing.T) {
	_, _, alice, bob := twoServers(t)
	ctx := context.Background()
	if err := bob.SetDisplayName(ctx, "Bob of Agency Two"); err != nil {
		t.Fatal(err)
	}
	p, err := alice.GetProfile(ctx, bob.UserID)
	if err != nil {
		t.Fatalf("remote profile: %v", err)
	}
	if p.DisplayName != "Bob of Agency Two" {
		t.Fatalf("remote display name %q", p.DisplayName)
	}
	if _, err := alice.GetProfile(ctx, "@nobody:hs2.test"); errcode(err) != "M_NOT_FOUND" {
		t.Fatalf("unknown remote user: %v", err)
	}
}

func errcode(err error) string {
	var herr mautrix.HTTPError
	if errors.As(err, &herr) && herr.RespError != nil {
		return herr.RespError.ErrCode
	}
	return ""
}

// TestOpenIDUserinfo: a third party holding alice's OpenID token learns
// from her server who she is, without any signature; a wrong token is 401.
func TestOpenIDUserinfo(t *testing.T) {
	n := newTestNet(t, "hs1.test")
	hs1 := n.start(t, "hs1.test", noLimits)
	ctx := context.Background()
	alice := fedUser(t, hs1, "alice")
	tok, err := alice.RequestOpenIDToken(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if tok.MatrixServerName != "hs1.test" || tok.ExpiresIn <= 0 || tok.TokenType != "Bearer" {
		t.Fatalf("token response: %+v", tok)
	}
	client := rawClient(n, "hs1.test")
	get := func(token string) (int, map[string]any) {
		resp, err := client.Get("https://" + hs1.FederationAddr + "/_matrix/federation/v1/openid/userinfo?access_token=" + url.QueryEscape(token))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&body)
		return resp.StatusCode, body
	}
	if status, body := get(tok.AccessToken); status != 200 || body["sub"] != alice.UserID.String() {
		t.Fatalf("userinfo: %d %v", status, body)
	}
	if status, body := get("not-a-token"); status != 401 || body["errcode"] != "M_UNKNOWN_TOKEN" {
		t.Fatalf("wrong token: %d %v", status, body)
	}
}

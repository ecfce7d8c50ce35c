package federation_test

import (
	"context"
	"errors"
	"testing"

	"maunium.net/go/mautrix"
)

// TestRemoteProfile: alice on hs1 reads the profile of bob on hs2.
func TestRemoteProfile(t *testing.T) {
	n := newTestNet(t, "hs1.test", "hs2.test")
	hs1 := n.start(t, "hs1.test", noLimits)
	hs2 := n.start(t, "hs2.test", noLimits)
	ctx := context.Background()
	alice := fedUser(t, hs1, "alice")
	bob := fedUser(t, hs2, "bob")
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

package event_test

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"testing"

	"github.com/parley-chat/parley/matrix/canonicaljson"
	"github.com/parley-chat/parley/matrix/event"
)

// The "Cryptographic Test Vectors" of the spec's appendices.
const (
	vectorSeed   = "YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1"
	vectorServer = "domain"
	vectorKeyID  = "ed25519:1"
)

func vectorKey(t testing.TB) ed25519.PrivateKey {
	t.Helper()
	seed, err := base64.RawStdEncoding.DecodeString(vectorSeed)
	if err != nil {
		t.Fatal(err)
	}
	return ed25519.NewKeyFromSeed(seed)
}

// vectorKeys is a KeyLookup that knows only the test vector key.
func vectorKeys(t testing.TB) event.KeyLookup {
	pub := vectorKey(t).Public().(ed25519.PublicKey)
	return func(server, keyID string, _ int64) (ed25519.PublicKey, error) {
		if server == vectorServer && keyID == vectorKeyID {
			return pub, nil
		}
		return nil, errors.New("unknown key")
	}
}

func mustCanonical(t testing.TB, s string) []byte {
	t.Helper()
	out, err := canonicaljson.Canonicalize([]byte(s))
	if err != nil {
		t.Fatalf("canonicalize %s: %v", s, err)
	}
	return out
}

func TestSpecVectorsJSONSigning(t *testing.T) {
	key := vectorKey(t)
	tests := []struct {
		name, in, want string
	}{
		{
			name: "empty object",
			in:   `{}`,
			want: `{
				"signatures": {
					"domain": {
						"ed25519:1": "K8280/U9SSy9IVtjBuVeLr+HpOB4BQFWbg+UZaADMtTdGYI7Geitb76LTrr5QV/7Xg4ahLwYGYZzuHGZKM5ZAQ"
					}
				}
			}`,
		},
		{
			name: "object with data",
			in:   `{"one": 1, "two": "Two"}`,
			want: `{
				"one": 1,
				"signatures": {
					"domain": {
						"ed25519:1": "KqmLSbO39/Bzb0QIYE82zqLwsA+PDzYIpIRA2sRQ4sL53+sN6/fpNSoqE7BP7vBZhG6kYdD13EIMJpvhJI+6Bw"
					}
				},
				"two": "Two"
			}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := event.SignJSON(vectorServer, vectorKeyID, key, []byte(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			if want := mustCanonical(t, tt.want); !bytes.Equal(got, want) {
				t.Errorf("SignJSON =\n%s\nwant\n%s", got, want)
			}
			pub := key.Public().(ed25519.PublicKey)
			if err := event.VerifyJSON(vectorServer, vectorKeyID, pub, got); err != nil {
				t.Errorf("VerifyJSON: %v", err)
			}
			// Signing again replaces the signature rather than adding one.
			again, err := event.SignJSON(vectorServer, vectorKeyID, key, got)
			if err != nil || !bytes.Equal(again, got) {
				t.Errorf("re-signing changed the object: %s, %v", again, err)
			}
		})
	}
}

func TestSpecVectorsEventSigning(t *testing.T) {
	key := vectorKey(t)
	tests := []struct {
		name    string
		version event.RoomVersion
		in      string
		want    string
	}{
		{
			name:    "minimal event",
			version: "3", // no event_id key, so a version with derived IDs
			in: `{
				"room_id": "!x:domain",
				"sender": "@a:domain",
				"origin": "domain",
				"origin_server_ts": 1000000,
				"signatures": {},
				"hashes": {},
				"type": "X",
				"content": {},
				"prev_events": [],
				"auth_events": [],
				"depth": 3,
				"unsigned": {
					"age_ts": 1000000
				}
			}`,
			want: `{
				"auth_events": [],
				"content": {},
				"depth": 3,
				"hashes": {
					"sha256": "5jM4wQpv6lnBo7CLIghJuHdW+s2CMBJPUOGOC89ncos"
				},
				"origin": "domain",
				"origin_server_ts": 1000000,
				"prev_events": [],
				"room_id": "!x:domain",
				"sender": "@a:domain",
				"signatures": {
					"domain": {
						"ed25519:1": "KxwGjPSDEtvnFgU00fwFz+l6d2pJM6XBIaMEn81SXPTRl16AqLAYqfIReFGZlHi5KLjAWbOoMszkwsQma+lYAg"
					}
				},
				"type": "X",
				"unsigned": {
					"age_ts": 1000000
				}
			}`,
		},
		{
			name:    "event with redactable content",
			version: "1",
			in: `{
				"content": {
					"body": "Here is the message content"
				},
				"event_id": "$0:domain",
				"origin": "domain",
				"origin_server_ts": 1000000,
				"type": "m.room.message",
				"room_id": "!r:domain",
				"sender": "@u:domain",
				"signatures": {},
				"unsigned": {
					"age_ts": 1000000
				}
			}`,
			want: `{
				"content": {
					"body": "Here is the message content"
				},
				"event_id": "$0:domain",
				"hashes": {
					"sha256": "onLKD1bGljeBWQhWZ1kaP9SorVmRQNdN5aM2JYU2n/g"
				},
				"origin": "domain",
				"origin_server_ts": 1000000,
				"type": "m.room.message",
				"room_id": "!r:domain",
				"sender": "@u:domain",
				"signatures": {
					"domain": {
						"ed25519:1": "Wm+VzmOUOz08Ds+0NTWb1d4CZrVsJSikkeRxh6aCcUwu6pNC78FunoD7KNWzqFn241eYHYMGCA5McEiVPdhzBA"
					}
				},
				"unsigned": {
					"age_ts": 1000000
				}
			}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			info, err := tt.version.Info()
			if err != nil {
				t.Fatal(err)
			}
			hashed, err := event.AddContentHash([]byte(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			got, err := event.SignEvent(vectorServer, vectorKeyID, key, hashed, info)
			if err != nil {
				t.Fatal(err)
			}
			if want := mustCanonical(t, tt.want); !bytes.Equal(got, want) {
				t.Fatalf("signed event =\n%s\nwant\n%s", got, want)
			}
			if err := event.CheckContentHash(got); err != nil {
				t.Errorf("CheckContentHash: %v", err)
			}
			ev, err := event.NewEventFromTrustedJSON(got, tt.version)
			if err != nil {
				t.Fatal(err)
			}
			if !ev.ContentHashMatches() {
				t.Error("ContentHashMatches = false")
			}
			if err := event.VerifyEventSignatures(ev, vectorKeys(t)); err != nil {
				t.Errorf("VerifyEventSignatures: %v", err)
			}
			// The signature is over the redacted event, so the redacted copy
			// verifies too, while its content hash no longer matches when
			// something was redacted.
			red, err := ev.Redacted()
			if err != nil {
				t.Fatal(err)
			}
			if err := event.VerifyEventSignatures(red, vectorKeys(t)); err != nil {
				t.Errorf("VerifyEventSignatures(redacted): %v", err)
			}
			if red.EventID() != ev.EventID() {
				t.Errorf("redacted event ID %s, want %s", red.EventID(), ev.EventID())
			}
		})
	}
}

package xmatrix

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/parley-chat/parley/matrix/canonicaljson"
)

// ErrBadSignature wraps every reason a request signature does not verify.
var ErrBadSignature = errors.New("X-Matrix signature does not verify")

// Request is what a request signature covers: step 1 of "Request
// Authentication" in the server-server spec. The server names are the ones
// before delegation.
type Request struct {
	Method string
	// URI is the request target as sent: the path from /_matrix on,
	// escaped, with "?" and the query string when there is one.
	URI         string
	Origin      string
	Destination string
	// Content is the JSON request body, nil when the request has none.
	Content json.RawMessage
}

// message returns the canonical JSON the signature is computed over: the
// request object without signatures (there is never an unsigned key).
func (r Request) message() ([]byte, error) {
	obj := map[string]any{
		"method":      r.Method,
		"uri":         r.URI,
		"origin":      r.Origin,
		"destination": r.Destination,
	}
	if r.Content != nil {
		content, err := canonicaljson.Canonicalize(r.Content)
		if err != nil {
			return nil, fmt.Errorf("request body is not valid JSON: %w", err)
		}
		obj["content"] = json.RawMessage(content)
	}
	return canonicaljson.Marshal(obj)
}

// Sign signs r with the origin's key keyID and returns the Authorization
// header value.
func Sign(r Request, keyID string, key ed25519.PrivateKey) (string, error) {
	if len(key) != ed25519.PrivateKeySize {
		return "", fmt.Errorf("xmatrix: private key has %d bytes", len(key))
	}
	if !strings.HasPrefix(keyID, "ed25519:") {
		return "", fmt.Errorf("xmatrix: key ID %q is not an ed25519 key", keyID)
	}
	msg, err := r.message()
	if err != nil {
		return "", fmt.Errorf("xmatrix: %w", err)
	}
	sig := ed25519.Sign(key, msg)
	return Params{
		Origin:      r.Origin,
		Destination: r.Destination,
		Key:         keyID,
		Sig:         base64.RawStdEncoding.EncodeToString(sig),
	}.String(), nil
}

// Verify checks a signature from header params p over r with the origin's
// public key pub. A body that is not JSON cannot have been signed and fails
// too.
func Verify(r Request, p Params, pub ed25519.PublicKey) error {
	if len(pub) != ed25519.PublicKeySize {
		return fmt.Errorf("%w: public key of %s has %d bytes", ErrBadSignature, p.Key, len(pub))
	}
	// Senders may pad their base64; the spec's encoding is unpadded.
	sig, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(p.Sig, "="))
	if err != nil || len(sig) != ed25519.SignatureSize {
		return fmt.Errorf("%w: sig is not a base64 ed25519 signature", ErrBadSignature)
	}
	msg, err := r.message()
	if err != nil {
		return fmt.Errorf("%w: %v", ErrBadSignature, err)
	}
	if !ed25519.Verify(pub, msg, sig) {
		return fmt.Errorf("%w: signature by %s with key %s is wrong", ErrBadSignature, r.Origin, p.Key)
	}
	return nil
}

package xmatrix

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"io"
	"net/http"
	"strings"

	"github.com/parley-chat/parley/federation/policy"
	"github.com/parley-chat/parley/homeserver/httputil"
	"github.com/parley-chat/parley/matrix/id"
)

// KeySource gives the public key a server currently uses to sign requests,
// fetching it when needed (the keyring implements it).
type KeySource interface {
	RequestKey(ctx context.Context, serverName, keyID string) (ed25519.PublicKey, error)
}

// Verifier authenticates inbound federation requests.
type Verifier struct {
	// ServerName is this server's name: requests naming another
	// destination are refused.
	ServerName string
	Keys       KeySource
	// Policy refuses denied origins with 403; nil allows every origin.
	Policy *policy.Servers
}

type originKey struct{}

// Origin returns the authenticated origin server of a request that passed
// the middleware.
func Origin(ctx context.Context) (string, bool) {
	o, ok := ctx.Value(originKey{}).(string)
	return o, ok
}

// WithOrigin returns ctx carrying origin as the authenticated origin.
func WithOrigin(ctx context.Context, origin string) context.Context {
	return context.WithValue(ctx, originKey{}, origin)
}

func unauthorized(msg string) *httputil.Error {
	return httputil.NewError(http.StatusUnauthorized, "M_UNAUTHORIZED", "%s", msg)
}

// Middleware verifies the X-Matrix signature of every request before next
// runs: 401 M_UNAUTHORIZED for a missing, malformed or wrong signature, a
// destination other than this server, or an origin whose key cannot be
// found; 403 M_FORBIDDEN for an origin the federation policy denies. The
// body is read (within the listener's size limit) and handed on to next
// unchanged; the origin is available through Origin.
func (v *Verifier) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin, herr := v.Authenticate(r)
		if herr != nil {
			httputil.Logger(r.Context()).WithField("reason", herr.Message).Info("federation request refused")
			httputil.WriteError(w, herr)
			return
		}
		next.ServeHTTP(w, r.WithContext(WithOrigin(r.Context(), origin)))
	})
}

// Authenticate checks the request's X-Matrix signature and returns its
// origin. It replaces r.Body with the bytes it read.
func (v *Verifier) Authenticate(r *http.Request) (string, *httputil.Error) {
	var headers []Params
	for _, h := range r.Header.Values("Authorization") {
		scheme, _, _ := strings.Cut(h, " ")
		if !strings.EqualFold(scheme, Scheme) {
			continue
		}
		p, err := ParseHeader(h)
		if err != nil {
			return "", unauthorized(err.Error())
		}
		headers = append(headers, p)
	}
	if len(headers) == 0 {
		return "", unauthorized("missing X-Matrix Authorization header")
	}
	first := headers[0]
	for _, p := range headers[1:] {
		// Several headers carry signatures by several keys of one sender;
		// mixing senders or destinations is not meaningful.
		if p.Origin != first.Origin || p.Destination != first.Destination {
			return "", unauthorized("X-Matrix headers disagree on origin or destination")
		}
	}
	if first.Destination != "" && first.Destination != v.ServerName {
		return "", unauthorized("request is for " + first.Destination + ", not this server")
	}
	if _, err := id.ParseServerName(first.Origin); err != nil {
		return "", unauthorized("origin is not a server name")
	}
	if first.Origin == v.ServerName {
		// Our own key would verify, but no server sends itself requests
		// over federation; a request claiming to be us is an echo or a
		// misconfiguration.
		return "", unauthorized("origin is this server")
	}
	if !v.Policy.Allowed(first.Origin) {
		return "", httputil.Forbidden("federation with " + first.Origin + " is not allowed")
	}

	body, herr := httputil.ReadBody(r)
	if herr != nil {
		return "", herr
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	req := Request{
		Method: r.Method,
		// RequestURI is the target exactly as received; re-encoding
		// r.URL could differ from what the sender signed.
		URI:         r.RequestURI,
		Origin:      first.Origin,
		Destination: v.ServerName,
	}
	if len(bytes.TrimSpace(body)) > 0 {
		req.Content = body
	}
	for _, p := range headers {
		pub, err := v.Keys.RequestKey(r.Context(), p.Origin, p.Key)
		if err != nil {
			// The details (addresses, network errors) are for our log, not
			// for the remote server.
			httputil.Logger(r.Context()).WithError(err).WithField("origin", p.Origin).Info("X-Matrix: no usable key")
			return "", unauthorized("cannot get key " + p.Key + " of " + p.Origin)
		}
		if err := Verify(req, p, pub); err != nil {
			return "", unauthorized(err.Error())
		}
	}
	return first.Origin, nil
}

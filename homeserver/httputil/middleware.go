package httputil

import (
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"net/url"
	"runtime/debug"
	"time"

	"github.com/sirupsen/logrus"
)

// RequestIDHeader carries the request ID back to the client, so that a user
// reporting a problem can quote the line in the server's log.
const RequestIDHeader = "X-Request-Id"

type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

// Flush lets streaming handlers flush through the wrapper.
func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap gives http.ResponseController the real writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Middleware wraps every request of a listener: it assigns a request ID,
// limits the body to maxBody bytes (413 M_TOO_LARGE up front when the
// declared length is over it), turns panics into 500 M_UNKNOWN, and logs
// the request once when it ends.
func Middleware(log logrus.FieldLogger, maxBody int64, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		reqID := newRequestID()
		w.Header().Set(RequestIDHeader, reqID)
		sw := &statusWriter{ResponseWriter: w}
		rlog := log.WithField("req_id", reqID)
		defer func() {
			if p := recover(); p != nil {
				rlog.WithField("panic", p).Errorf("handler panicked\n%s", debug.Stack())
				if sw.status == 0 {
					WriteError(sw, Unknown())
				}
			}
			rlog.WithFields(logrus.Fields{
				"method":      r.Method,
				"path":        RedactedURL(r.URL),
				"status":      sw.status,
				"duration_ms": float64(time.Since(start).Microseconds()) / 1000,
				"remote":      r.RemoteAddr,
			}).Info("request")
		}()
		if r.ContentLength > maxBody {
			WriteError(sw, TooLarge("request body too large"))
			return
		}
		r.Body = http.MaxBytesReader(sw, r.Body, maxBody)
		next.ServeHTTP(sw, r.WithContext(WithLogger(r.Context(), rlog)))
	})
}

// RedactedURL is the request path and query with secrets (access_token)
// replaced, fit for logs.
func RedactedURL(u *url.URL) string {
	q := u.Query()
	if q.Has("access_token") {
		q.Set("access_token", "<redacted>")
		return u.Path + "?" + q.Encode()
	}
	if u.RawQuery != "" {
		return u.Path + "?" + u.RawQuery
	}
	return u.Path
}

func newRequestID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

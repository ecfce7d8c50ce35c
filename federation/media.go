package federation

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"net/url"
	"strconv"
	"time"

	"github.com/gorilla/mux"

	"github.com/parley-chat/parley/federation/fedclient"
	"github.com/parley-chat/parley/homeserver/httputil"
	"github.com/parley-chat/parley/homeserver/media"
)

// Media serves our media to other servers (GET /_matrix/federation/v1/media/
// download and thumbnail, as multipart/mixed) and returns the fetcher the
// media service uses to get other servers' media. Call after Register.
func (a *API) Media(svc *media.Service) media.RemoteFetcher {
	h := &mediaHandlers{a: a, svc: svc}
	a.authed.HandleFunc("/_matrix/federation/v1/media/download/{mediaId}", h.download).Methods(http.MethodGet)
	a.authed.HandleFunc("/_matrix/federation/v1/media/thumbnail/{mediaId}", h.thumbnail).Methods(http.MethodGet)
	return &mediaFetcher{a: a}
}

type mediaHandlers struct {
	a   *API
	svc *media.Service
}

// maxMediaWait bounds timeout_ms on federation media requests.
const maxMediaWait = 20 * time.Second

func mediaWait(r *http.Request) time.Duration {
	ms, err := strconv.ParseInt(r.URL.Query().Get("timeout_ms"), 10, 64)
	if err != nil || ms < 0 {
		return 0
	}
	return min(time.Duration(ms)*time.Millisecond, maxMediaWait)
}

func (h *mediaHandlers) writeErr(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, media.ErrNotFound):
		httputil.WriteError(w, httputil.NotFound("media not found"))
	case errors.Is(err, media.ErrNotYetUploaded):
		httputil.WriteError(w, httputil.NewError(http.StatusGatewayTimeout, "M_NOT_YET_UPLOADED", "the media has not been uploaded yet"))
	default:
		var e *httputil.Error
		if errors.As(err, &e) {
			httputil.WriteError(w, e)
			return
		}
		httputil.Logger(r.Context()).WithError(err).Warn("federation media request failed")
		httputil.WriteError(w, httputil.NotFound("media not available"))
	}
}

func (h *mediaHandlers) download(w http.ResponseWriter, r *http.Request) {
	// Only our own media: a server never proxies others' media over federation.
	f, err := h.svc.Download(r.Context(), h.a.cfg.ServerName, mux.Vars(r)["mediaId"], media.FetchOptions{Wait: mediaWait(r)})
	if err != nil {
		h.writeErr(w, r, err)
		return
	}
	defer f.Body.Close()
	writeMultipart(w, f)
}

func (h *mediaHandlers) thumbnail(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	width, _ := strconv.Atoi(q.Get("width"))
	height, _ := strconv.Atoi(q.Get("height"))
	method := q.Get("method")
	if method == "" {
		method = "scale"
	}
	f, err := h.svc.Thumbnail(r.Context(), h.a.cfg.ServerName, mux.Vars(r)["mediaId"],
		media.ThumbnailRequest{Width: width, Height: height, Method: method, Animated: q.Get("animated") == "true"},
		media.FetchOptions{Wait: mediaWait(r)})
	if err != nil {
		if errors.Is(err, media.ErrInvalidParam) {
			httputil.WriteError(w, httputil.InvalidParam(err.Error()))
			return
		}
		h.writeErr(w, r, err)
		return
	}
	defer f.Body.Close()
	writeMultipart(w, f)
}

// writeMultipart answers with the spec's two parts: the metadata (an empty
// JSON object for now) and the content.
func writeMultipart(w http.ResponseWriter, f *media.File) {
	mw := multipart.NewWriter(w)
	w.Header().Set("Content-Type", "multipart/mixed; boundary="+mw.Boundary())
	w.WriteHeader(http.StatusOK)
	meta, err := mw.CreatePart(textproto.MIMEHeader{"Content-Type": {"application/json"}})
	if err != nil {
		return
	}
	_, _ = meta.Write([]byte("{}"))
	hdr := textproto.MIMEHeader{"Content-Type": {f.ContentType}}
	if f.Filename != "" {
		hdr.Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": f.Filename}))
	}
	part, err := mw.CreatePart(hdr)
	if err != nil {
		return
	}
	_, _ = io.Copy(part, f.Body)
	_ = mw.Close()
}

// mediaFetcher fetches other servers' media for the media service.
type mediaFetcher struct{ a *API }

// FetchMedia asks the media's server through the authenticated federation
// endpoint, falling back to the older unauthenticated download endpoint
// for servers that do not have it yet.
func (m *mediaFetcher) FetchMedia(ctx context.Context, serverName, mediaID string, maxBytes int64, wait time.Duration) (*media.RemoteMedia, error) {
	q := "?timeout_ms=" + strconv.FormatInt(wait.Milliseconds(), 10)
	resp, err := m.a.client.Stream(ctx, serverName, "/_matrix/federation/v1/media/download/"+url.PathEscape(mediaID)+q)
	var fe *fedclient.Error
	if errors.As(err, &fe) && (fe.StatusCode == http.StatusNotFound && fe.ErrCode == "M_UNRECOGNIZED" || fe.StatusCode == http.StatusMethodNotAllowed) {
		return m.legacy(ctx, serverName, mediaID, q)
	}
	if err != nil {
		return nil, mediaError(err)
	}
	if resp.ContentLength > maxBytes {
		resp.Body.Close()
		return nil, media.ErrRemoteTooLarge
	}
	mt, params, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/mixed" || params["boundary"] == "" {
		resp.Body.Close()
		return nil, fmt.Errorf("%w: %s did not answer multipart/mixed", media.ErrRemoteUnavailable, serverName)
	}
	mr := multipart.NewReader(resp.Body, params["boundary"])
	if _, err := mr.NextPart(); err != nil { // the metadata, ignored for now
		resp.Body.Close()
		return nil, fmt.Errorf("%w: %v", media.ErrRemoteUnavailable, err)
	}
	part, err := mr.NextPart()
	if err != nil {
		resp.Body.Close()
		return nil, fmt.Errorf("%w: %v", media.ErrRemoteUnavailable, err)
	}
	if loc := part.Header.Get("Location"); loc != "" {
		resp.Body.Close()
		return m.followLocation(ctx, loc)
	}
	return &media.RemoteMedia{ContentType: part.Header.Get("Content-Type"), Filename: dispositionName(part.Header.Get("Content-Disposition")),
		Body: readCloser{Reader: part, Closer: resp.Body}}, nil
}

// legacy fetches through GET /_matrix/media/v3/download of older servers.
func (m *mediaFetcher) legacy(ctx context.Context, serverName, mediaID, q string) (*media.RemoteMedia, error) {
	path := "/_matrix/media/v3/download/" + url.PathEscape(serverName) + "/" + url.PathEscape(mediaID) + q + "&allow_remote=false"
	resp, err := m.a.client.Stream(ctx, serverName, path)
	if err != nil {
		return nil, mediaError(err)
	}
	return &media.RemoteMedia{ContentType: resp.Header.Get("Content-Type"), Filename: dispositionName(resp.Header.Get("Content-Disposition")), Body: resp.Body}, nil
}

// followLocation downloads media a server redirected to. The URL is the
// remote server's choice, so it is fetched like any untrusted URL: HTTPS only.
func (m *mediaFetcher) followLocation(ctx context.Context, loc string) (*media.RemoteMedia, error) {
	u, err := url.Parse(loc)
	if err != nil || u.Scheme != "https" {
		return nil, fmt.Errorf("%w: redirect to a non-HTTPS location", media.ErrRemoteUnavailable)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, loc, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", media.ErrRemoteUnavailable, err)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("%w: the redirect answered %d", media.ErrRemoteUnavailable, resp.StatusCode)
	}
	return &media.RemoteMedia{ContentType: resp.Header.Get("Content-Type"), Filename: dispositionName(resp.Header.Get("Content-Disposition")), Body: resp.Body}, nil
}

func mediaError(err error) error {
	var fe *fedclient.Error
	if errors.As(err, &fe) {
		switch {
		case fe.StatusCode == http.StatusNotFound:
			return fmt.Errorf("%w: %v", media.ErrNotFound, err)
		case fe.ErrCode == "M_NOT_YET_UPLOADED":
			return fmt.Errorf("%w: %v", media.ErrNotYetUploaded, err)
		case fe.ErrCode == "M_TOO_LARGE" || fe.StatusCode == http.StatusRequestEntityTooLarge:
			return fmt.Errorf("%w: %v", media.ErrRemoteTooLarge, err)
		}
	}
	return fmt.Errorf("%w: %v", media.ErrRemoteUnavailable, err)
}

func dispositionName(h string) string {
	if _, params, err := mime.ParseMediaType(h); err == nil {
		return params["filename"]
	}
	return ""
}

type readCloser struct {
	io.Reader
	io.Closer
}

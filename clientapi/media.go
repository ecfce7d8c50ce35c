package clientapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/mux"

	"github.com/parley-chat/parley/homeserver/httputil"
	"github.com/parley-chat/parley/homeserver/media"
	"github.com/parley-chat/parley/homeserver/users"
)

// MediaConfig is what the media repository's endpoints need.
type MediaConfig struct {
	Media *media.Service
	// AllowUnauthenticated serves the deprecated unauthenticated
	// /_matrix/media/v3/download and /thumbnail endpoints; otherwise they
	// answer 404 M_NOT_FOUND (the spec's "freeze").
	AllowUnauthenticated bool
}

// mediaAPI serves the media endpoints.
type mediaAPI struct {
	*API
	svc         *media.Service
	allowUnauth bool
}

// mediaUploadPrefixes are the paths whose requests carry media, with
// their own body limit (see SplitMediaUploads).
var mediaUploadPrefixes = []string{"/_matrix/media/v3/upload", "/_matrix/media/r0/upload"}

// defaultMediaWait is timeout_ms's default in the spec.
const defaultMediaWait = 20 * time.Second

// RegisterMedia adds the media repository's routes to r (from
// httputil.NewRouter): the upload endpoints under /_matrix/media, the
// authenticated download, thumbnail, config and preview endpoints under
// /_matrix/client/v1/media, their deprecated /_matrix/media/v3
// counterparts, and the media admin API under /_parley/admin/v1.
func (a *API) RegisterMedia(r *mux.Router, cfg MediaConfig) {
	m := &mediaAPI{API: a, svc: cfg.Media, allowUnauth: cfg.AllowUnauthenticated}
	handle := func(path string, h http.HandlerFunc, method string) {
		r.Handle(path, noEncodedSlash(h)).Methods(method)
	}
	get, post, put, del := http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete
	for _, v := range []string{"v3", "r0"} {
		p := "/_matrix/media/" + v
		handle(p+"/upload", a.authed(m.upload), post)
		handle(p+"/download/{serverName}/{mediaId}", m.legacyDownload, get)
		handle(p+"/download/{serverName}/{mediaId}/{fileName}", m.legacyDownload, get)
		handle(p+"/thumbnail/{serverName}/{mediaId}", m.legacyThumbnail, get)
		// These two always required authentication; deprecated, not
		// frozen.
		handle(p+"/config", a.authed(m.config), get)
		handle(p+"/preview_url", a.authed(m.previewURL), get)
	}
	handle("/_matrix/media/v3/upload/{serverName}/{mediaId}", a.authed(m.uploadReserved), put)
	handle("/_matrix/media/v1/create", a.authed(m.create), post)

	c := "/_matrix/client/v1/media"
	handle(c+"/download/{serverName}/{mediaId}", a.authed(m.download), get)
	handle(c+"/download/{serverName}/{mediaId}/{fileName}", a.authed(m.download), get)
	handle(c+"/thumbnail/{serverName}/{mediaId}", a.authed(m.thumbnail), get)
	handle(c+"/config", a.authed(m.config), get)
	handle(c+"/preview_url", a.authed(m.previewURL), get)

	admin := "/_parley/admin/v1"
	handle(admin+"/media/quarantine/{serverName}/{mediaId}", a.authed(m.adminQuarantine(true)), post)
	handle(admin+"/media/quarantine/{serverName}/{mediaId}", a.authed(m.adminQuarantine(false)), del)
	handle(admin+"/media/{serverName}/{mediaId}", a.authed(m.adminDelete), del)
	handle(admin+"/purge_media_cache", a.authed(m.adminPurgeCache), post)
}

// noEncodedSlash refuses paths with an encoded slash: the router decodes
// it before matching, so "local%2Fhost" would otherwise become a server
// name and a media ID that the client never meant.
func noEncodedSlash(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(strings.ToLower(r.URL.EscapedPath()), "%2f") {
			httputil.WriteError(w, httputil.InvalidParam("encoded slashes are not allowed in media paths"))
			return
		}
		h.ServeHTTP(w, r)
	})
}

// SplitMediaUploads sends media uploads to uploads and every other request
// to rest. Uploads need a body limit of their own (media.max_upload_bytes),
// far above the one that protects the JSON endpoints, so the server wraps
// each handler in the body-limit middleware with its own limit.
func SplitMediaUploads(rest, uploads http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if isMediaUpload(r) {
			uploads.ServeHTTP(w, r)
			return
		}
		rest.ServeHTTP(w, r)
	})
}

func isMediaUpload(r *http.Request) bool {
	if r.Method != http.MethodPost && r.Method != http.MethodPut {
		return false
	}
	for _, p := range mediaUploadPrefixes {
		if r.URL.Path == p || strings.HasPrefix(r.URL.Path, p+"/") {
			return true
		}
	}
	return false
}

// errUploadRead marks a failure to read the client's upload (a dropped
// connection), as opposed to our own storage failing.
var errUploadRead = errors.New("could not read the upload")

type uploadBody struct{ r io.Reader }

func (b uploadBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err != nil && err != io.EOF {
		err = fmt.Errorf("%w: %w", errUploadRead, err)
	}
	return n, err
}

// upload is POST /_matrix/media/v3/upload.
func (m *mediaAPI) upload(w http.ResponseWriter, r *http.Request, dev *users.Device) {
	mediaID, err := m.svc.Upload(r.Context(), m.newUpload(r, dev))
	if err != nil {
		m.writeMediaError(w, r, err)
		return
	}
	httputil.WriteJSON(w, http.StatusOK, map[string]string{"content_uri": media.MXC(m.svc.ServerName(), mediaID)})
}

func (m *mediaAPI) newUpload(r *http.Request, dev *users.Device) media.Upload {
	return media.Upload{
		Uploader:     dev.UserID,
		ContentType:  r.Header.Get("Content-Type"),
		Filename:     r.URL.Query().Get("filename"),
		Body:         uploadBody{r.Body},
		DeclaredSize: r.ContentLength,
	}
}

// create is POST /_matrix/media/v1/create.
func (m *mediaAPI) create(w http.ResponseWriter, r *http.Request, dev *users.Device) {
	mediaID, expires, err := m.svc.Create(r.Context(), dev.UserID)
	if err != nil {
		m.writeMediaError(w, r, err)
		return
	}
	httputil.WriteJSON(w, http.StatusOK, map[string]any{
		"content_uri":       media.MXC(m.svc.ServerName(), mediaID),
		"unused_expires_at": expires,
	})
}

// uploadReserved is PUT /_matrix/media/v3/upload/{serverName}/{mediaId}.
func (m *mediaAPI) uploadReserved(w http.ResponseWriter, r *http.Request, dev *users.Device) {
	v := mux.Vars(r)
	if err := m.svc.UploadReserved(r.Context(), v["serverName"], v["mediaId"], m.newUpload(r, dev)); err != nil {
		m.writeMediaError(w, r, err)
		return
	}
	httputil.WriteJSON(w, http.StatusOK, struct{}{})
}

// setMediaSecurityHeaders is sent on every download and thumbnail
// response: even if a browser opens the content directly, on the
// homeserver's origin, it cannot run scripts or be sniffed into HTML.
func setMediaSecurityHeaders(h http.Header) {
	h.Set("Content-Security-Policy", media.ContentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	// Web clients on other origins embed media (spec v1.4).
	h.Set("Cross-Origin-Resource-Policy", "cross-origin")
}

// frozen answers the deprecated unauthenticated endpoints when they are
// off, as the spec's freeze describes: 404 M_NOT_FOUND.
func (m *mediaAPI) frozen(w http.ResponseWriter) bool {
	if m.allowUnauth {
		return false
	}
	httputil.WriteError(w, httputil.NotFound("unauthenticated media access is disabled on this server: use /_matrix/client/v1/media"))
	return true
}

// download is GET /_matrix/client/v1/media/download/{serverName}/{mediaId}[/{fileName}].
func (m *mediaAPI) download(w http.ResponseWriter, r *http.Request, _ *users.Device) {
	m.serveDownload(w, r, true)
}

// legacyDownload is the deprecated GET /_matrix/media/v3/download/...
func (m *mediaAPI) legacyDownload(w http.ResponseWriter, r *http.Request) {
	if m.frozen(w) {
		return
	}
	m.serveDownload(w, r, r.URL.Query().Get("allow_remote") != "false")
}

func (m *mediaAPI) serveDownload(w http.ResponseWriter, r *http.Request, allowRemote bool) {
	setMediaSecurityHeaders(w.Header())
	wait, e := mediaWait(r)
	if e != nil {
		httputil.WriteError(w, e)
		return
	}
	v := mux.Vars(r)
	f, err := m.svc.Download(r.Context(), v["serverName"], v["mediaId"], media.FetchOptions{Wait: wait, AllowRemote: allowRemote})
	if err != nil {
		m.writeMediaError(w, r, err)
		return
	}
	defer f.Body.Close()
	filename := f.Filename
	if name, ok := v["fileName"]; ok {
		filename = name
	}
	h := w.Header()
	h.Set("Content-Type", f.ContentType)
	h.Set("Content-Disposition", media.ContentDisposition(media.Disposition(f.ContentType), filename))
	serveContent(w, r, f)
}

// serveContent streams f with ranges and conditional requests. The
// content of an mxc:// URI never changes, so its hash is a strong ETag;
// "private" keeps shared caches from handing authenticated media to
// anyone.
func serveContent(w http.ResponseWriter, r *http.Request, f *media.File) {
	h := w.Header()
	h.Set("ETag", `"`+f.Hash+`"`)
	h.Set("Cache-Control", "private, max-age=86400")
	http.ServeContent(w, r, "", f.Created, f.Body)
}

// mediaWait parses timeout_ms: how long to wait for content not yet
// uploaded.
func mediaWait(r *http.Request) (time.Duration, *httputil.Error) {
	s := r.URL.Query().Get("timeout_ms")
	if s == "" {
		return defaultMediaWait, nil
	}
	ms, err := strconv.ParseInt(s, 10, 64)
	if err != nil || ms < 0 {
		return 0, httputil.InvalidParam("timeout_ms must be a non-negative integer")
	}
	return time.Duration(min(ms, media.MaxWait.Milliseconds())) * time.Millisecond, nil
}

// thumbnail is GET /_matrix/client/v1/media/thumbnail/{serverName}/{mediaId}.
func (m *mediaAPI) thumbnail(w http.ResponseWriter, r *http.Request, _ *users.Device) {
	m.serveThumbnail(w, r, true)
}

// legacyThumbnail is the deprecated GET /_matrix/media/v3/thumbnail/...
func (m *mediaAPI) legacyThumbnail(w http.ResponseWriter, r *http.Request) {
	if m.frozen(w) {
		return
	}
	m.serveThumbnail(w, r, r.URL.Query().Get("allow_remote") != "false")
}

func (m *mediaAPI) serveThumbnail(w http.ResponseWriter, r *http.Request, allowRemote bool) {
	setMediaSecurityHeaders(w.Header())
	q := r.URL.Query()
	var req media.ThumbnailRequest
	for _, d := range []struct {
		name string
		dst  *int
	}{{"width", &req.Width}, {"height", &req.Height}} {
		s := q.Get(d.name)
		if s == "" {
			httputil.WriteError(w, missingParam(d.name+" is required"))
			return
		}
		n, err := strconv.ParseInt(s, 10, 32)
		if err != nil || n < 1 {
			httputil.WriteError(w, httputil.InvalidParam(d.name+" must be a positive integer"))
			return
		}
		*d.dst = int(n)
	}
	req.Method = q.Get("method")
	if req.Method == "" {
		req.Method = "scale"
	}
	switch q.Get("animated") {
	case "", "false":
	case "true":
		req.Animated = true
	default:
		httputil.WriteError(w, httputil.InvalidParam("animated must be true or false"))
		return
	}
	wait, e := mediaWait(r)
	if e != nil {
		httputil.WriteError(w, e)
		return
	}
	v := mux.Vars(r)
	f, err := m.svc.Thumbnail(r.Context(), v["serverName"], v["mediaId"], req, media.FetchOptions{Wait: wait, AllowRemote: allowRemote})
	if err != nil {
		if errors.Is(err, media.ErrImageTooLarge) && v["serverName"] != m.svc.ServerName() {
			// The spec's status for remote content too large to thumbnail.
			httputil.WriteError(w, httputil.NewError(http.StatusBadGateway, "M_TOO_LARGE", "%s", err.Error()))
			return
		}
		m.writeMediaError(w, r, err)
		return
	}
	defer f.Body.Close()
	h := w.Header()
	h.Set("Content-Type", f.ContentType)
	h.Set("Content-Disposition", media.ContentDisposition("inline", "thumbnail."+strings.TrimPrefix(f.ContentType, "image/")))
	serveContent(w, r, f)
}

// config is GET /_matrix/client/v1/media/config.
func (m *mediaAPI) config(w http.ResponseWriter, _ *http.Request, _ *users.Device) {
	httputil.WriteJSON(w, http.StatusOK, map[string]int64{"m.upload.size": m.svc.MaxUploadBytes()})
}

// previewURL is GET /_matrix/client/v1/media/preview_url.
func (m *mediaAPI) previewURL(w http.ResponseWriter, r *http.Request, _ *users.Device) {
	u := r.URL.Query().Get("url")
	if u == "" {
		httputil.WriteError(w, missingParam("url is required"))
		return
	}
	og, err := m.svc.PreviewURL(r.Context(), u)
	if err != nil {
		m.writeMediaError(w, r, err)
		return
	}
	httputil.WriteJSON(w, http.StatusOK, og)
}

// requireAdmin answers 403 M_FORBIDDEN to non-admins.
func requireAdmin(w http.ResponseWriter, dev *users.Device) bool {
	if !dev.IsAdmin {
		httputil.WriteError(w, httputil.Forbidden("only server admins may do this"))
		return false
	}
	return true
}

// adminQuarantine is POST (quarantine) and DELETE (release)
// /_parley/admin/v1/media/quarantine/{serverName}/{mediaId}.
func (m *mediaAPI) adminQuarantine(quarantined bool) func(http.ResponseWriter, *http.Request, *users.Device) {
	return func(w http.ResponseWriter, r *http.Request, dev *users.Device) {
		if !requireAdmin(w, dev) {
			return
		}
		v := mux.Vars(r)
		if err := m.svc.Quarantine(r.Context(), v["serverName"], v["mediaId"], quarantined); err != nil {
			m.writeMediaError(w, r, err)
			return
		}
		httputil.Logger(r.Context()).WithFields(map[string]any{"admin": dev.UserID, "media": media.MXC(v["serverName"], v["mediaId"]),
			"quarantined": quarantined}).Info("admin changed media quarantine")
		httputil.WriteJSON(w, http.StatusOK, struct{}{})
	}
}

// adminDelete is DELETE /_parley/admin/v1/media/{serverName}/{mediaId}.
func (m *mediaAPI) adminDelete(w http.ResponseWriter, r *http.Request, dev *users.Device) {
	if !requireAdmin(w, dev) {
		return
	}
	v := mux.Vars(r)
	if err := m.svc.Delete(r.Context(), v["serverName"], v["mediaId"]); err != nil {
		m.writeMediaError(w, r, err)
		return
	}
	httputil.Logger(r.Context()).WithFields(map[string]any{"admin": dev.UserID, "media": media.MXC(v["serverName"], v["mediaId"])}).
		Info("admin deleted media")
	httputil.WriteJSON(w, http.StatusOK, struct{}{})
}

// adminPurgeCache is POST /_parley/admin/v1/purge_media_cache?before_ts=MS:
// it deletes cached remote media last accessed before before_ts.
func (m *mediaAPI) adminPurgeCache(w http.ResponseWriter, r *http.Request, dev *users.Device) {
	if !requireAdmin(w, dev) {
		return
	}
	s := r.URL.Query().Get("before_ts")
	if s == "" {
		httputil.WriteError(w, missingParam("before_ts is required"))
		return
	}
	ts, err := strconv.ParseInt(s, 10, 64)
	if err != nil || ts < 0 {
		httputil.WriteError(w, httputil.InvalidParam("before_ts must be a timestamp in milliseconds"))
		return
	}
	n, err := m.svc.PurgeRemoteCache(r.Context(), time.UnixMilli(ts))
	if err != nil {
		m.writeMediaError(w, r, err)
		return
	}
	httputil.Logger(r.Context()).WithFields(map[string]any{"admin": dev.UserID, "deleted": n}).Info("admin purged the remote media cache")
	httputil.WriteJSON(w, http.StatusOK, map[string]int{"deleted": n})
}

// mediaErrors maps the media service's errors to Matrix errors.
var mediaErrors = []struct {
	err     error
	status  int
	errcode string
}{
	{media.ErrInvalidID, http.StatusBadRequest, "M_INVALID_PARAM"},
	{media.ErrInvalidParam, http.StatusBadRequest, "M_INVALID_PARAM"},
	{media.ErrNotFound, http.StatusNotFound, "M_NOT_FOUND"},
	{media.ErrNotYetUploaded, http.StatusGatewayTimeout, "M_NOT_YET_UPLOADED"},
	{media.ErrTooLarge, http.StatusRequestEntityTooLarge, "M_TOO_LARGE"},
	{media.ErrImageTooLarge, http.StatusRequestEntityTooLarge, "M_TOO_LARGE"},
	{media.ErrRemoteTooLarge, http.StatusBadGateway, "M_TOO_LARGE"},
	{media.ErrRemoteUnavailable, http.StatusBadGateway, "M_UNKNOWN"},
	// The spec's code for quotas is M_FORBIDDEN; M_RESOURCE_LIMIT_EXCEEDED
	// is for server-wide limits and needs an admin contact.
	{media.ErrQuotaExceeded, http.StatusForbidden, "M_FORBIDDEN"},
	{media.ErrForbidden, http.StatusForbidden, "M_FORBIDDEN"},
	{media.ErrCannotOverwrite, http.StatusConflict, "M_CANNOT_OVERWRITE_MEDIA"},
	{media.ErrTooManyPending, http.StatusTooManyRequests, "M_LIMIT_EXCEEDED"},
	{media.ErrCannotThumbnail, http.StatusBadRequest, "M_UNKNOWN"},
	{media.ErrPreviewDisabled, http.StatusForbidden, "M_FORBIDDEN"},
	{media.ErrPreviewForbidden, http.StatusForbidden, "M_FORBIDDEN"},
	{media.ErrPreviewFailed, http.StatusBadGateway, "M_UNKNOWN"},
}

func (m *mediaAPI) writeMediaError(w http.ResponseWriter, r *http.Request, err error) {
	for _, me := range mediaErrors {
		if errors.Is(err, me.err) {
			httputil.WriteError(w, httputil.NewError(me.status, me.errcode, "%s", err.Error()))
			return
		}
	}
	log := httputil.Logger(r.Context()).WithError(err)
	switch {
	case errors.Is(err, errUploadRead), errors.Is(err, context.Canceled):
		// The client went away or sent a broken body: its problem, not
		// ours, and it will not read the answer anyway.
		log.Info("media request aborted by the client")
		httputil.WriteError(w, httputil.NewError(http.StatusBadRequest, "M_UNKNOWN", "could not read the request body"))
	default:
		log.Error("media request failed")
		httputil.WriteError(w, httputil.Unknown())
	}
}

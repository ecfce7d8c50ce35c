// Package media is Parley's media repository: uploads (direct and
// asynchronous), downloads, thumbnails, URL previews, quarantine and the
// cache of remote media.
//
// Content is kept in a Store addressed by SHA-256, metadata in the
// database. Fetching media from other servers is left to a RemoteFetcher
// that the federation layer implements; without one, remote media is not
// found.
package media

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/sirupsen/logrus"

	"github.com/parley-chat/parley/matrix/id"
	"github.com/parley-chat/parley/storage"
)

// Errors of the media service. The client API maps each to its Matrix
// error; wrapped errors carry details for the message.
var (
	// ErrNotFound: no such media, or it is quarantined (404 M_NOT_FOUND).
	ErrNotFound = errors.New("media not found")
	// ErrInvalidID: the server name or media ID is malformed.
	ErrInvalidID = errors.New("invalid media ID")
	// ErrNotYetUploaded: the media ID is reserved but its content has not
	// arrived in time (504 M_NOT_YET_UPLOADED).
	ErrNotYetUploaded = errors.New("media not yet uploaded")
	// ErrTooLarge: the upload is over max_upload_bytes (413 M_TOO_LARGE).
	ErrTooLarge = errors.New("media too large")
	// ErrRemoteTooLarge: remote media is over the size this server copies
	// (502 M_TOO_LARGE).
	ErrRemoteTooLarge = errors.New("remote media too large")
	// ErrRemoteUnavailable: the remote server could not be asked (502).
	ErrRemoteUnavailable = errors.New("remote media unavailable")
	// ErrQuotaExceeded: the upload would pass the user's quota (403
	// M_FORBIDDEN, as the spec asks for quotas).
	ErrQuotaExceeded = errors.New("media quota exceeded")
	// ErrForbidden: the reservation belongs to another user (403).
	ErrForbidden = errors.New("media reserved by another user")
	// ErrCannotOverwrite: the reservation already has content (409
	// M_CANNOT_OVERWRITE_MEDIA).
	ErrCannotOverwrite = errors.New("media already uploaded")
	// ErrTooManyPending: the user holds too many unused reservations (429
	// M_LIMIT_EXCEEDED).
	ErrTooManyPending = errors.New("too many pending media uploads")
	// ErrInvalidParam: a malformed filename or thumbnail parameter (400).
	ErrInvalidParam = errors.New("invalid parameter")
)

// RemoteFetcher fetches media from the server that hosts it. The
// federation layer implements it (GET /_matrix/federation/v1/media/download);
// the media service caches what it returns.
type RemoteFetcher interface {
	// FetchMedia returns the content of mxc://serverName/mediaID, waiting
	// up to wait for media the remote server has not received yet. Errors
	// should wrap ErrNotFound, ErrNotYetUploaded or ErrRemoteTooLarge where
	// they apply (anything else is reported as ErrRemoteUnavailable).
	// maxBytes is the most the caller will store: a fetcher may refuse
	// larger content early, and the caller stops reading after it anyway.
	// The caller closes Body.
	FetchMedia(ctx context.Context, serverName, mediaID string, maxBytes int64, wait time.Duration) (*RemoteMedia, error)
}

// RemoteMedia is media fetched from another server.
type RemoteMedia struct {
	ContentType string
	// Filename is the remote server's, from its Content-Disposition.
	Filename string
	Body     io.ReadCloser
}

// Config is what the media service needs.
type Config struct {
	ServerName string
	DB         *storage.DB
	Store      Store
	// MaxUploadBytes bounds uploads and copies of remote media.
	MaxUploadBytes int64
	// MaxBytesPerUser is the per-user quota; 0 means none.
	MaxBytesPerUser int64
	// MaxPendingUploads bounds a user's unused reservations.
	MaxPendingUploads int
	// MaxThumbnailPixels bounds the images decoded for thumbnails.
	MaxThumbnailPixels int64
	URLPreview         PreviewConfig
	// Remote fetches other servers' media; nil means remote media is
	// never found.
	Remote RemoteFetcher
	Log    logrus.FieldLogger
}

// Service is the media repository.
type Service struct {
	cfg     Config
	db      *storage.DB
	store   Store
	log     logrus.FieldLogger
	now     func() time.Time
	waiters waiters
	// hashLocks serialise, per content hash, "commit content + record a
	// reference" against "drop a reference + delete unreferenced content",
	// so that a delete never removes content a concurrent upload of the
	// same bytes has just referenced.
	hashLocks [64]sync.Mutex
	flights   flightGroup
	// thumbSlots bounds concurrent image decodes, the memory-hungry part
	// of thumbnailing.
	thumbSlots chan struct{}
	preview    *previewer
}

// ReservationLifetime is how long a media ID from POST
// /_matrix/media/v1/create waits for its content (the spec's recommended
// default).
const ReservationLifetime = 24 * time.Hour

// MaxWait caps timeout_ms, the time a download waits for pending content.
const MaxWait = 60 * time.Second

// touchInterval: a media's last access time is updated at most this often.
const touchInterval = time.Hour

// New builds the media service.
func New(cfg Config) *Service {
	if cfg.Log == nil {
		cfg.Log = logrus.StandardLogger()
	}
	s := &Service{
		cfg:        cfg,
		db:         cfg.DB,
		store:      cfg.Store,
		log:        cfg.Log,
		now:        time.Now,
		thumbSlots: make(chan struct{}, 2),
	}
	s.preview = newPreviewer(s, cfg.URLPreview)
	return s
}

// SetRemoteFetcher plugs in the fetcher of remote media (the federation
// client, built after the media service). Call it before serving requests.
func (s *Service) SetRemoteFetcher(f RemoteFetcher) { s.cfg.Remote = f }

// SetClock replaces the service's clock, for tests.
func (s *Service) SetClock(now func() time.Time) { s.now = now }

// ServerName is the server name of local media.
func (s *Service) ServerName() string { return s.cfg.ServerName }

// MaxUploadBytes is the upload size limit, which clients learn from
// /media/config.
func (s *Service) MaxUploadBytes() int64 { return s.cfg.MaxUploadBytes }

func (s *Service) nowMS() int64 { return s.now().UnixMilli() }

func (s *Service) lockHash(hash string) func() {
	var n int
	if len(hash) >= 2 {
		v, _ := strconv.ParseUint(hash[:2], 16, 8)
		n = int(v)
	}
	m := &s.hashLocks[n%len(s.hashLocks)]
	m.Lock()
	return m.Unlock
}

// ValidMediaID reports whether mediaID is allowed by the spec:
// [A-Za-z0-9_-]+. Checking it before anything else is what makes path
// traversal through media IDs impossible.
func ValidMediaID(mediaID string) bool {
	if mediaID == "" || len(mediaID) > 255 {
		return false
	}
	for i := 0; i < len(mediaID); i++ {
		c := mediaID[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// CheckMXC validates an mxc:// URI's server name and media ID.
func CheckMXC(serverName, mediaID string) error {
	if _, err := id.ParseServerName(serverName); err != nil {
		return fmt.Errorf("%w: server name: %v", ErrInvalidID, err)
	}
	if !ValidMediaID(mediaID) {
		return fmt.Errorf("%w: media IDs may only contain A-Z, a-z, 0-9, _ and -", ErrInvalidID)
	}
	return nil
}

// MXC is the mxc:// URI of a media.
func MXC(serverName, mediaID string) string { return "mxc://" + serverName + "/" + mediaID }

const idAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

// newMediaID returns a random media ID of 24 letters and digits (about
// 143 bits), unguessable, since the ID is all an unauthenticated download
// needs.
func newMediaID() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = idAlphabet[int(b[i])%len(idAlphabet)]
	}
	return string(b)
}

// NormalizeContentType returns the content type to record for an upload:
// the client's, reformatted, or application/octet-stream when it is
// missing or unparseable, as the spec says.
func NormalizeContentType(ct string) string {
	if ct == "" {
		return "application/octet-stream"
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil {
		return "application/octet-stream"
	}
	if f := mime.FormatMediaType(mt, params); f != "" {
		return f
	}
	return "application/octet-stream"
}

// maxFilenameBytes bounds stored filenames.
const maxFilenameBytes = 1024

func checkFilename(name string) error {
	if !utf8.ValidString(name) {
		return fmt.Errorf("%w: filename is not valid UTF-8", ErrInvalidParam)
	}
	if len(name) > maxFilenameBytes {
		return fmt.Errorf("%w: filename longer than %d bytes", ErrInvalidParam, maxFilenameBytes)
	}
	return nil
}

// Upload is content a user uploads.
type Upload struct {
	// Uploader is the user ID.
	Uploader    string
	ContentType string
	Filename    string
	Body        io.Reader
	// DeclaredSize is the request's Content-Length, or -1 when unknown; a
	// declared size over a limit is refused before reading anything.
	DeclaredSize int64
}

// stage checks the limits and streams u.Body into the store.
func (s *Service) stage(ctx context.Context, u *Upload) (Staged, error) {
	if err := checkFilename(u.Filename); err != nil {
		return nil, err
	}
	u.ContentType = NormalizeContentType(u.ContentType)
	limit := s.cfg.MaxUploadBytes
	if u.DeclaredSize > limit {
		return nil, fmt.Errorf("%w: uploads may be at most %d bytes", ErrTooLarge, limit)
	}
	quotaLeft := int64(-1)
	if s.cfg.MaxBytesPerUser > 0 {
		used, err := s.db.MediaBytesUsed(ctx, u.Uploader)
		if err != nil {
			return nil, err
		}
		quotaLeft = max(s.cfg.MaxBytesPerUser-used, 0)
		if u.DeclaredSize > quotaLeft {
			return nil, quotaError(s.cfg.MaxBytesPerUser)
		}
		limit = min(limit, quotaLeft)
	}
	// Read one byte past the limit to tell "exactly at the limit" from
	// "over it" without trusting Content-Length.
	st, err := s.store.Put(ctx, io.LimitReader(u.Body, limit+1))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, fmt.Errorf("%w: uploads may be at most %d bytes", ErrTooLarge, s.cfg.MaxUploadBytes)
		}
		return nil, err
	}
	if st.Size() > limit {
		_ = st.Discard()
		if limit == quotaLeft && quotaLeft < s.cfg.MaxUploadBytes {
			return nil, quotaError(s.cfg.MaxBytesPerUser)
		}
		return nil, fmt.Errorf("%w: uploads may be at most %d bytes", ErrTooLarge, s.cfg.MaxUploadBytes)
	}
	return st, nil
}

func quotaError(quota int64) error {
	return fmt.Errorf("%w: each user may store at most %d bytes", ErrQuotaExceeded, quota)
}

// commitReferenced commits staged content and records a reference to it
// with record, under the content's lock. When record fails the content is
// removed again unless something else references it.
func (s *Service) commitReferenced(ctx context.Context, st Staged, record func() error) error {
	unlock := s.lockHash(st.Hash())
	defer unlock()
	if err := st.Commit(); err != nil {
		_ = st.Discard()
		return err
	}
	if err := record(); err != nil {
		s.dropIfUnreferencedLocked(ctx, st.Hash())
		return err
	}
	return nil
}

// dropIfUnreferencedLocked deletes content nothing references; the
// caller holds the hash's lock.
func (s *Service) dropIfUnreferencedLocked(ctx context.Context, hash string) {
	ref, err := s.db.ContentReferenced(ctx, hash)
	if err != nil {
		s.log.WithError(err).WithField("hash", hash).Warn("media: could not check content references; keeping the file")
		return
	}
	if !ref {
		if err := s.store.Delete(ctx, hash); err != nil {
			s.log.WithError(err).WithField("hash", hash).Warn("media: could not delete unreferenced content")
		}
	}
}

// Upload stores new content and returns its media ID.
func (s *Service) Upload(ctx context.Context, u Upload) (string, error) {
	st, err := s.stage(ctx, &u)
	if err != nil {
		return "", err
	}
	mediaID := newMediaID()
	now := s.nowMS()
	err = s.commitReferenced(ctx, st, func() error {
		return s.db.InsertMedia(ctx, storage.Media{
			ServerName: s.cfg.ServerName, MediaID: mediaID, ContentHash: st.Hash(),
			ContentType: u.ContentType, Filename: u.Filename, Size: st.Size(), Uploader: u.Uploader,
			CreatedTS: now, LastAccessTS: now,
		}, s.cfg.MaxBytesPerUser)
	})
	if errors.Is(err, storage.ErrMediaQuota) {
		return "", quotaError(s.cfg.MaxBytesPerUser)
	}
	if err != nil {
		return "", err
	}
	s.log.WithFields(logrus.Fields{"media_id": mediaID, "size": st.Size(), "user_id": u.Uploader}).Info("media uploaded")
	return mediaID, nil
}

// Create reserves a media ID for uploader's asynchronous upload and
// returns it with the time (Unix ms) the reservation lapses.
func (s *Service) Create(ctx context.Context, uploader string) (string, int64, error) {
	now := s.nowMS()
	expires := now + ReservationLifetime.Milliseconds()
	mediaID := newMediaID()
	err := s.db.ReserveMedia(ctx, storage.Media{
		ServerName: s.cfg.ServerName, MediaID: mediaID, Uploader: uploader,
		CreatedTS: now, ExpiresTS: expires, LastAccessTS: now,
	}, now, s.cfg.MaxPendingUploads)
	if errors.Is(err, storage.ErrMediaTooManyPending) {
		return "", 0, fmt.Errorf("%w: at most %d media IDs may wait for their upload", ErrTooManyPending, s.cfg.MaxPendingUploads)
	}
	if err != nil {
		return "", 0, err
	}
	return mediaID, expires, nil
}

// UploadReserved uploads content to a media ID reserved with Create.
func (s *Service) UploadReserved(ctx context.Context, serverName, mediaID string, u Upload) error {
	if err := CheckMXC(serverName, mediaID); err != nil {
		return err
	}
	if serverName != s.cfg.ServerName {
		return fmt.Errorf("%w: media IDs of other servers cannot be uploaded to", ErrNotFound)
	}
	// Refuse early, before reading the body, what can be refused early.
	m, err := s.db.GetMedia(ctx, serverName, mediaID)
	if err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return fmt.Errorf("%w: unknown media ID", ErrNotFound)
		}
		return err
	}
	switch {
	case m.Uploader != u.Uploader:
		return fmt.Errorf("%w: this media ID was created by another user", ErrForbidden)
	case !m.Pending():
		return fmt.Errorf("%w: this media ID already has content", ErrCannotOverwrite)
	case m.ExpiresTS <= s.nowMS():
		return fmt.Errorf("%w: the media ID expired", ErrNotFound)
	}
	st, err := s.stage(ctx, &u)
	if err != nil {
		return err
	}
	err = s.commitReferenced(ctx, st, func() error {
		return s.db.CompleteReservedMedia(ctx, storage.Media{
			ServerName: serverName, MediaID: mediaID, ContentHash: st.Hash(), ContentType: u.ContentType,
			Filename: u.Filename, Size: st.Size(), Uploader: u.Uploader,
		}, s.nowMS(), s.cfg.MaxBytesPerUser)
	})
	switch {
	case err == nil:
		s.waiters.notify(serverName + "/" + mediaID)
		s.log.WithFields(logrus.Fields{"media_id": mediaID, "size": st.Size(), "user_id": u.Uploader}).Info("media uploaded")
		return nil
	case errors.Is(err, storage.ErrMediaQuota):
		return quotaError(s.cfg.MaxBytesPerUser)
	case errors.Is(err, storage.ErrMediaExists):
		return fmt.Errorf("%w: this media ID already has content", ErrCannotOverwrite)
	case errors.Is(err, storage.ErrMediaForbidden):
		return fmt.Errorf("%w: this media ID was created by another user", ErrForbidden)
	case errors.Is(err, storage.ErrNotFound):
		return fmt.Errorf("%w: the media ID expired", ErrNotFound)
	}
	return err
}

// FetchOptions control how a download finds its media.
type FetchOptions struct {
	// Wait is how long to wait for content that has not been uploaded yet
	// (capped at MaxWait).
	Wait time.Duration
	// AllowRemote lets the server fetch media of other servers; the
	// deprecated endpoints' allow_remote=false clears it.
	AllowRemote bool
}

// File is content ready to serve. The caller closes Body.
type File struct {
	ContentType string
	// Filename is the uploader's file name; "" when none was given.
	Filename string
	Size     int64
	// Hash is the content's SHA-256, a strong ETag.
	Hash    string
	Created time.Time
	Body    io.ReadSeekCloser
}

// Download opens a media's content.
func (s *Service) Download(ctx context.Context, serverName, mediaID string, opts FetchOptions) (*File, error) {
	m, err := s.resolve(ctx, serverName, mediaID, opts)
	if err != nil {
		return nil, err
	}
	body, err := s.store.Open(ctx, m.ContentHash)
	if err != nil {
		return nil, fmt.Errorf("media %s/%s: content %s: %w", serverName, mediaID, m.ContentHash, err)
	}
	s.touch(ctx, m)
	return &File{
		ContentType: m.ContentType, Filename: m.Filename, Size: m.Size, Hash: m.ContentHash,
		Created: time.UnixMilli(m.CreatedTS), Body: body,
	}, nil
}

// touch records an access (for the remote cache's purge by age).
func (s *Service) touch(ctx context.Context, m *storage.Media) {
	now := s.now()
	if now.Sub(time.UnixMilli(m.LastAccessTS)) < touchInterval {
		return
	}
	if err := s.db.TouchMedia(ctx, m.ServerName, m.MediaID, now.UnixMilli(), now.Add(-touchInterval).UnixMilli()); err != nil {
		s.log.WithError(err).Warn("media: recording access failed")
	}
}

// resolve finds a media with content: local media (waiting for pending
// uploads), or remote media from the cache or the remote server.
// Quarantined media is not found.
func (s *Service) resolve(ctx context.Context, serverName, mediaID string, opts FetchOptions) (*storage.Media, error) {
	if err := CheckMXC(serverName, mediaID); err != nil {
		return nil, err
	}
	wait := min(max(opts.Wait, 0), MaxWait)
	var m *storage.Media
	var err error
	if serverName == s.cfg.ServerName {
		m, err = s.waitForContent(ctx, serverName, mediaID, wait)
	} else {
		m, err = s.remote(ctx, serverName, mediaID, opts.AllowRemote, wait)
	}
	if err != nil {
		return nil, err
	}
	if m.Quarantined {
		return nil, fmt.Errorf("%w: media is quarantined", ErrNotFound)
	}
	return m, nil
}

// recheckInterval is how often a waiting download looks at the database
// again, for uploads finished by another process.
const recheckInterval = time.Second

func (s *Service) waitForContent(ctx context.Context, serverName, mediaID string, wait time.Duration) (*storage.Media, error) {
	key := serverName + "/" + mediaID
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	for {
		// Subscribe before looking, so that an upload finishing in between
		// is not missed.
		ch, release := s.waiters.subscribe(key)
		m, err := s.db.GetMedia(ctx, serverName, mediaID)
		if err != nil {
			release()
			if errors.Is(err, storage.ErrNotFound) {
				return nil, fmt.Errorf("%w: unknown media", ErrNotFound)
			}
			return nil, err
		}
		if !m.Pending() || m.Quarantined {
			release()
			return m, nil
		}
		if m.ExpiresTS <= s.nowMS() {
			release()
			return nil, fmt.Errorf("%w: the reservation expired unused", ErrNotFound)
		}
		recheck := time.NewTimer(recheckInterval)
		select {
		case <-ch:
		case <-recheck.C:
		case <-deadline.C:
			recheck.Stop()
			release()
			return nil, fmt.Errorf("%w: content has not been uploaded yet", ErrNotYetUploaded)
		case <-ctx.Done():
			recheck.Stop()
			release()
			return nil, ctx.Err()
		}
		recheck.Stop()
		release()
	}
}

// remote returns a copy of remote media, fetching it into the cache on a
// miss. Concurrent requests for the same media share one fetch.
func (s *Service) remote(ctx context.Context, serverName, mediaID string, allowRemote bool, wait time.Duration) (*storage.Media, error) {
	m, err := s.db.GetMedia(ctx, serverName, mediaID)
	if err == nil && !m.Pending() {
		return m, nil
	}
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		return nil, err
	}
	if s.cfg.Remote == nil || !allowRemote {
		return nil, fmt.Errorf("%w: remote media is not available", ErrNotFound)
	}
	v, err := s.flights.do(ctx, "remote:"+serverName+"/"+mediaID, func(ctx context.Context) (any, error) {
		// A fetch that ended between our miss above and this flight has
		// cached it already: look again before fetching a second time.
		if m, err := s.db.GetMedia(ctx, serverName, mediaID); err == nil && !m.Pending() {
			return m, nil
		}
		return s.fetchRemote(ctx, serverName, mediaID, wait)
	})
	if err != nil {
		return nil, err
	}
	return v.(*storage.Media), nil
}

func (s *Service) fetchRemote(ctx context.Context, serverName, mediaID string, wait time.Duration) (*storage.Media, error) {
	rm, err := s.cfg.Remote.FetchMedia(ctx, serverName, mediaID, s.cfg.MaxUploadBytes, wait)
	if err != nil {
		switch {
		case errors.Is(err, ErrNotFound), errors.Is(err, ErrNotYetUploaded), errors.Is(err, ErrRemoteTooLarge):
			return nil, err
		}
		return nil, fmt.Errorf("%w: %v", ErrRemoteUnavailable, err)
	}
	defer rm.Body.Close()
	filename := rm.Filename
	if checkFilename(filename) != nil {
		filename = ""
	}
	st, err := s.store.Put(ctx, io.LimitReader(rm.Body, s.cfg.MaxUploadBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrRemoteUnavailable, err)
	}
	if st.Size() > s.cfg.MaxUploadBytes {
		_ = st.Discard()
		return nil, fmt.Errorf("%w: remote media is larger than %d bytes", ErrRemoteTooLarge, s.cfg.MaxUploadBytes)
	}
	now := s.nowMS()
	m := &storage.Media{
		ServerName: serverName, MediaID: mediaID, ContentHash: st.Hash(), ContentType: NormalizeContentType(rm.ContentType),
		Filename: filename, Size: st.Size(), CreatedTS: now, Remote: true, LastAccessTS: now,
	}
	err = s.commitReferenced(ctx, st, func() error { return s.db.InsertMedia(ctx, *m, 0) })
	if errors.Is(err, storage.ErrMediaExists) {
		// Another process cached it first.
		return s.db.GetMedia(ctx, serverName, mediaID)
	}
	if err != nil {
		return nil, err
	}
	return m, nil
}

// Quarantine hides a media (or shows it again): quarantined media is not
// served, but kept for the admins to inspect.
func (s *Service) Quarantine(ctx context.Context, serverName, mediaID string, quarantined bool) error {
	if err := CheckMXC(serverName, mediaID); err != nil {
		return err
	}
	err := s.db.SetMediaQuarantined(ctx, serverName, mediaID, quarantined)
	if errors.Is(err, storage.ErrNotFound) {
		return fmt.Errorf("%w: unknown media", ErrNotFound)
	}
	if err == nil {
		s.log.WithFields(logrus.Fields{"server_name": serverName, "media_id": mediaID, "quarantined": quarantined}).Info("media quarantine changed")
	}
	return err
}

// Delete deletes a media, its thumbnails and the files no other media
// uses.
func (s *Service) Delete(ctx context.Context, serverName, mediaID string) error {
	if err := CheckMXC(serverName, mediaID); err != nil {
		return err
	}
	hashes, err := s.db.DeleteMedia(ctx, serverName, mediaID)
	if errors.Is(err, storage.ErrNotFound) {
		return fmt.Errorf("%w: unknown media", ErrNotFound)
	}
	if err != nil {
		return err
	}
	for _, h := range hashes {
		unlock := s.lockHash(h)
		s.dropIfUnreferencedLocked(ctx, h)
		unlock()
	}
	s.log.WithFields(logrus.Fields{"server_name": serverName, "media_id": mediaID}).Info("media deleted")
	return nil
}

// PurgeRemoteCache deletes the cached copies of remote media last
// accessed before before, and returns how many it deleted. They are
// fetched again when next asked for.
func (s *Service) PurgeRemoteCache(ctx context.Context, before time.Time) (int, error) {
	n := 0
	for {
		batch, err := s.db.RemoteMediaAccessedBefore(ctx, before.UnixMilli(), 200)
		if err != nil {
			return n, err
		}
		for _, m := range batch {
			if err := s.Delete(ctx, m.ServerName, m.MediaID); err != nil && !errors.Is(err, ErrNotFound) {
				return n, err
			}
			n++
		}
		if len(batch) < 200 {
			break
		}
	}
	if _, err := s.db.DeleteURLPreviewsBefore(ctx, before.UnixMilli()); err != nil {
		return n, err
	}
	if _, err := s.db.DeleteExpiredMediaReservations(ctx, s.nowMS()); err != nil {
		return n, err
	}
	return n, nil
}

// waiters lets downloads waiting for a pending upload be woken when it
// arrives.
type waiters struct {
	mu sync.Mutex
	m  map[string]*waiter
}

type waiter struct {
	ch   chan struct{}
	refs int
}

func (w *waiters) subscribe(key string) (<-chan struct{}, func()) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.m == nil {
		w.m = map[string]*waiter{}
	}
	e := w.m[key]
	if e == nil {
		e = &waiter{ch: make(chan struct{})}
		w.m[key] = e
	}
	e.refs++
	return e.ch, func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		e.refs--
		if e.refs == 0 && w.m[key] == e {
			delete(w.m, key)
		}
	}
}

func (w *waiters) notify(key string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if e := w.m[key]; e != nil {
		close(e.ch)
		delete(w.m, key)
	}
}

// flightGroup runs one call per key at a time and gives its result to
// every caller that asked meanwhile: a popular remote image is fetched
// once, a thumbnail generated once.
type flightGroup struct {
	mu sync.Mutex
	m  map[string]*flight
}

type flight struct {
	done chan struct{}
	v    any
	err  error
}

// do runs fn for key unless a run is in flight, then waits for it. fn runs
// detached from any single caller's cancellation, since others may be
// waiting for its result; a caller who gives up gets ctx.Err().
func (g *flightGroup) do(ctx context.Context, key string, fn func(context.Context) (any, error)) (any, error) {
	g.mu.Lock()
	if g.m == nil {
		g.m = map[string]*flight{}
	}
	f, ok := g.m[key]
	if !ok {
		f = &flight{done: make(chan struct{})}
		g.m[key] = f
		go func() {
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Minute)
			defer cancel()
			f.v, f.err = fn(fctx)
			g.mu.Lock()
			delete(g.m, key)
			g.mu.Unlock()
			close(f.done)
		}()
	}
	g.mu.Unlock()
	select {
	case <-f.done:
		return f.v, f.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

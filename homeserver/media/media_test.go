package media

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/parley-chat/parley/storage"
	"github.com/parley-chat/parley/storage/storagetest"
)

func quietLog() logrus.FieldLogger {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return l
}

// newTestService builds a service on a fresh database of engine e and a
// store in a temp dir.
func newTestService(t *testing.T, dsn string, adjust func(*Config)) (*Service, *FSStore) {
	t.Helper()
	db, err := storage.Open(context.Background(), dsn, storage.Pool{MaxOpenConns: 4})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	store, err := NewFSStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		ServerName: "local.test", DB: db, Store: store,
		MaxUploadBytes: 1 << 20, MaxPendingUploads: 3, MaxThumbnailPixels: 10_000_000,
		Log: quietLog(),
	}
	if adjust != nil {
		adjust(&cfg)
	}
	return New(cfg), store
}

// files lists the content files in a store (not the temp dir).
func files(t *testing.T, s *FSStore) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(s.root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && d.Name() == "tmp" {
			return filepath.SkipDir
		}
		if !d.IsDir() {
			out = append(out, d.Name())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func readAll(t *testing.T, f *File) []byte {
	t.Helper()
	defer f.Body.Close()
	b, err := io.ReadAll(f.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestFSStore(t *testing.T) {
	ctx := context.Background()
	s, err := NewFSStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	put := func(content string) Staged {
		st, err := s.Put(ctx, strings.NewReader(content))
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	a := put("hello")
	sum := sha256.Sum256([]byte("hello"))
	if a.Hash() != hex.EncodeToString(sum[:]) || a.Size() != 5 {
		t.Fatalf("hash %s size %d", a.Hash(), a.Size())
	}
	if _, err := s.Open(ctx, a.Hash()); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("staged content visible before commit: %v", err)
	}
	if err := a.Commit(); err != nil {
		t.Fatal(err)
	}
	b := put("hello")
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	if got := files(t, s); len(got) != 1 {
		t.Fatalf("identical content stored as %v", got)
	}
	c := put("discarded")
	if err := c.Discard(); err != nil {
		t.Fatal(err)
	}
	if tmp, _ := os.ReadDir(filepath.Join(s.root, "tmp")); len(tmp) != 0 {
		t.Fatalf("temp files left: %v", tmp)
	}
	f, err := s.Open(ctx, a.Hash())
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(f)
	f.Close()
	if string(got) != "hello" {
		t.Fatalf("read %q", got)
	}
	for _, bad := range []string{"", "../../etc/passwd", strings.Repeat("A", 64), strings.Repeat("a", 63) + "/"} {
		if _, err := s.Open(ctx, bad); err == nil || errors.Is(err, os.ErrNotExist) {
			t.Errorf("Open(%q) not refused: %v", bad, err)
		}
	}
	// A failing reader leaves nothing behind.
	if _, err := s.Put(ctx, io.MultiReader(strings.NewReader("part"), errReader{})); err == nil {
		t.Fatal("reader error not returned")
	}
	if tmp, _ := os.ReadDir(filepath.Join(s.root, "tmp")); len(tmp) != 0 {
		t.Fatalf("temp files left after a failed put: %v", tmp)
	}
	if err := s.Delete(ctx, a.Hash()); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, a.Hash()); err != nil {
		t.Fatalf("deleting missing content: %v", err)
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("connection reset") }

func TestValidMediaID(t *testing.T) {
	for _, ok := range []string{"abc", "A-b_9", strings.Repeat("x", 255)} {
		if !ValidMediaID(ok) {
			t.Errorf("%q refused", ok)
		}
	}
	for _, bad := range []string{"", "..", "a/b", "a.b", "a%2e", "a b", "ä", "a\x00", strings.Repeat("x", 256)} {
		if ValidMediaID(bad) {
			t.Errorf("%q accepted", bad)
		}
	}
	if err := CheckMXC("bad server!", "abc"); !errors.Is(err, ErrInvalidID) {
		t.Errorf("bad server name: %v", err)
	}
}

func TestContentDisposition(t *testing.T) {
	cases := []struct{ disp, name, want string }{
		{"inline", "", "inline"},
		{"inline", "cat.jpg", `inline; filename="cat.jpg"`},
		{"attachment", "page.html", `attachment; filename="page.html"`},
		{"inline", "Grüße.txt", `inline; filename="Gr__e.txt"; filename*=utf-8''Gr%C3%BC%C3%9Fe.txt`},
		{"inline", `a"b\c.txt`, `inline; filename="a_b_c.txt"; filename*=utf-8''a%22b_c.txt`},
		{"inline", "../../etc/passwd", `inline; filename="_.._etc_passwd"`},
		{"inline", "evil\r\nSet-Cookie: x=y", `inline; filename="evilSet-Cookie: x=y"`},
		{"inline", "100%.txt", `inline; filename="100_.txt"; filename*=utf-8''100%25.txt`},
		{"inline", "photo\u202egpj.exe", `inline; filename="photogpj.exe"`},
		{"inline", "\x00\x01", "inline"},
	}
	for _, tc := range cases {
		if got := ContentDisposition(tc.disp, tc.name); got != tc.want {
			t.Errorf("ContentDisposition(%q, %q) = %q, want %q", tc.disp, tc.name, got, tc.want)
		}
	}
	long := strings.Repeat("x", 500) + ".pdf"
	if got := SanitizeFilename(long); len([]rune(got)) != maxHeaderFilename || !strings.HasSuffix(got, ".pdf") {
		t.Errorf("long name sanitised to %q", got)
	}
}

func TestInlineSafe(t *testing.T) {
	for _, ct := range []string{"image/png", "IMAGE/JPEG", "text/plain; charset=utf-8", "video/mp4", "audio/ogg"} {
		if !InlineSafe(ct) {
			t.Errorf("%s not inline", ct)
		}
	}
	for _, ct := range []string{"text/html", "image/svg+xml", "application/javascript", "text/javascript", "application/xml",
		"text/xml", "application/xhtml+xml", "application/pdf", "application/octet-stream", "", "garbage/;;"} {
		if InlineSafe(ct) {
			t.Errorf("%s inline", ct)
		}
	}
	if NormalizeContentType("") != "application/octet-stream" || NormalizeContentType("not a type") != "application/octet-stream" ||
		NormalizeContentType("Text/Plain; Charset=UTF-8") != "text/plain; charset=UTF-8" {
		t.Error("NormalizeContentType")
	}
}

func TestChooseSize(t *testing.T) {
	cases := []struct {
		w, h   int
		method string
		want   thumbSize
	}{
		{32, 32, "crop", thumbSize{32, 32, "crop"}},
		{1, 1, "crop", thumbSize{32, 32, "crop"}},
		{33, 20, "crop", thumbSize{96, 96, "crop"}},
		{96, 96, "crop", thumbSize{96, 96, "crop"}},
		{200, 200, "crop", thumbSize{320, 320, "crop"}},
		{2000, 10, "crop", originalSize},
		{320, 240, "scale", thumbSize{320, 240, "scale"}},
		{300, 300, "scale", thumbSize{640, 480, "scale"}},
		{800, 100, "scale", thumbSize{800, 600, "scale"}},
		{1200, 900, "scale", thumbSize{1600, 1200, "scale"}},
		{4000, 3000, "scale", originalSize},
	}
	for _, tc := range cases {
		if got := chooseSize(ThumbnailRequest{Width: tc.w, Height: tc.h, Method: tc.method}); got != tc.want {
			t.Errorf("%dx%d %s: %v, want %v", tc.w, tc.h, tc.method, got, tc.want)
		}
	}
}

func TestResize(t *testing.T) {
	img := image.NewRGBA(image.Rect(0, 0, 400, 200))
	cases := []struct {
		size thumbSize
		w, h int
	}{
		{thumbSize{320, 240, "scale"}, 320, 160},
		{thumbSize{96, 96, "crop"}, 96, 96},
		{thumbSize{320, 320, "crop"}, 320, 200}, // would need upscaling: cut only
	}
	for _, tc := range cases {
		if b := resize(img, tc.size).Bounds(); b.Dx() != tc.w || b.Dy() != tc.h {
			t.Errorf("%v: %v, want %dx%d", tc.size, b, tc.w, tc.h)
		}
	}
}

func TestPublicAddress(t *testing.T) {
	for _, s := range []string{"1.1.1.1", "8.8.8.8", "2606:4700:4700::1111", "::ffff:1.1.1.1"} {
		if !PublicAddress(netip.MustParseAddr(s)) {
			t.Errorf("%s refused", s)
		}
	}
	for _, s := range []string{"127.0.0.1", "127.1.2.3", "10.0.0.1", "172.16.5.4", "192.168.1.1", "169.254.169.254", "0.0.0.0",
		"100.64.0.1", "255.255.255.255", "224.0.0.1", "::1", "::", "fe80::1", "fc00::1", "fd12::1", "::ffff:127.0.0.1",
		"::ffff:10.0.0.1", "64:ff9b::7f00:1", "2002:7f00:1::", "ff02::1", "198.18.0.1"} {
		if PublicAddress(netip.MustParseAddr(s)) {
			t.Errorf("%s allowed", s)
		}
	}
}

func TestParseOpenGraph(t *testing.T) {
	og := map[string]any{}
	parseOpenGraph(strings.NewReader(`<!doctype html><html><head><title> Fallback title </title>
		<meta property="og:title" content="The Title">
		<meta property="og:title" content="second title ignored">
		<meta name="og:site_name" content="Site">
		<meta name="description" content="plain description">
		<meta property="og:image" content="/img.png">
		<meta property="og:empty" content="">
		</head><body><p>text</p></body></html>`), og)
	want := map[string]any{"og:title": "The Title", "og:site_name": "Site", "og:description": "plain description", "og:image": "/img.png"}
	if len(og) != len(want) {
		t.Fatalf("got %v", og)
	}
	for k, v := range want {
		if og[k] != v {
			t.Fatalf("%s = %v, want %v (all: %v)", k, og[k], v, og)
		}
	}
	og = map[string]any{}
	parseOpenGraph(strings.NewReader(`<title>Only a title</title>`), og)
	if og["og:title"] != "Only a title" {
		t.Fatalf("title fallback: %v", og)
	}
	if got := clip(strings.Repeat("é", maxOGValue)); len(got) > maxOGValue || !strings.HasSuffix(got, "é") {
		t.Fatalf("clip cut a rune: %q", got[len(got)-4:])
	}
}

func TestUploadsAndDeletes(t *testing.T) {
	for _, e := range storagetest.Engines(t) {
		t.Run(e.Name, func(t *testing.T) { testUploadsAndDeletes(t, e.DSN) })
	}
}

func testUploadsAndDeletes(t *testing.T, dsn string) {
	ctx := context.Background()
	svc, store := newTestService(t, dsn, func(c *Config) { c.MaxBytesPerUser = 100 })
	up := func(user, content string, declared int64) (string, error) {
		return svc.Upload(ctx, Upload{Uploader: user, ContentType: "text/plain", Filename: "f.txt",
			Body: strings.NewReader(content), DeclaredSize: declared})
	}
	a, err := up("@a:local.test", "same bytes", -1)
	if err != nil {
		t.Fatal(err)
	}
	b, err := up("@b:local.test", "same bytes", -1)
	if err != nil {
		t.Fatal(err)
	}
	if a == b || len(files(t, store)) != 1 {
		t.Fatalf("ids %s %s, files %v", a, b, files(t, store))
	}
	// The quota counts per user, and is enforced both on the declared size
	// and while streaming when no size is declared.
	if _, err := up("@a:local.test", strings.Repeat("x", 95), 95); !errors.Is(err, ErrQuotaExceeded) {
		t.Fatalf("declared over quota: %v", err)
	}
	if _, err := up("@a:local.test", strings.Repeat("x", 95), -1); !errors.Is(err, ErrQuotaExceeded) {
		t.Fatalf("streamed over quota: %v", err)
	}
	if _, err := up("@a:local.test", strings.Repeat("x", 90), -1); err != nil {
		t.Fatalf("exactly at the quota: %v", err)
	}
	if len(files(t, store)) != 2 {
		t.Fatalf("refused uploads left files: %v", files(t, store))
	}
	// Deleting one of two media with the same content keeps the file.
	if err := svc.Delete(ctx, "local.test", a); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Download(ctx, "local.test", a, FetchOptions{}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted media: %v", err)
	}
	f, err := svc.Download(ctx, "local.test", b, FetchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, f); string(got) != "same bytes" {
		t.Fatalf("content %q", got)
	}
	if err := svc.Delete(ctx, "local.test", b); err != nil {
		t.Fatal(err)
	}
	if len(files(t, store)) != 1 {
		t.Fatalf("unreferenced content kept: %v", files(t, store))
	}
	if err := svc.Delete(ctx, "local.test", b); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
}

func TestReservations(t *testing.T) {
	for _, e := range storagetest.Engines(t) {
		t.Run(e.Name, func(t *testing.T) { testReservations(t, e.DSN) })
	}
}

func testReservations(t *testing.T, dsn string) {
	ctx := context.Background()
	svc, _ := newTestService(t, dsn, nil)
	var clock atomic.Int64
	clock.Store(time.Now().UnixMilli())
	svc.SetClock(func() time.Time { return time.UnixMilli(clock.Load()) })
	alice, bob := "@alice:local.test", "@bob:local.test"

	id1, expires, err := svc.Create(ctx, alice)
	if err != nil {
		t.Fatal(err)
	}
	if expires != clock.Load()+ReservationLifetime.Milliseconds() {
		t.Fatalf("expires %d", expires)
	}
	// A download waits for the upload and gets it as soon as it lands.
	var wg sync.WaitGroup
	var got []byte
	var dlErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		f, err := svc.Download(ctx, "local.test", id1, FetchOptions{Wait: 30 * time.Second})
		if err != nil {
			dlErr = err
			return
		}
		got, dlErr = io.ReadAll(f.Body)
		f.Body.Close()
	}()
	time.Sleep(50 * time.Millisecond)
	upload := func(user, id, content string) error {
		return svc.UploadReserved(ctx, "local.test", id, Upload{Uploader: user, Body: strings.NewReader(content), DeclaredSize: -1})
	}
	if err := upload(bob, id1, "bob's"); !errors.Is(err, ErrForbidden) {
		t.Fatalf("other user's upload: %v", err)
	}
	start := time.Now()
	if err := upload(alice, id1, "late content"); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if dlErr != nil || string(got) != "late content" {
		t.Fatalf("waiting download: %q %v", got, dlErr)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("waiting download woke after %v", d)
	}
	if err := upload(alice, id1, "again"); !errors.Is(err, ErrCannotOverwrite) {
		t.Fatalf("overwrite: %v", err)
	}

	// A pending media that is not uploaded in time: 504-style error.
	id2, _, err := svc.Create(ctx, alice)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Download(ctx, "local.test", id2, FetchOptions{Wait: 10 * time.Millisecond}); !errors.Is(err, ErrNotYetUploaded) {
		t.Fatalf("pending download: %v", err)
	}
	// The pending limit (3) counts live reservations only.
	if _, _, err := svc.Create(ctx, alice); err != nil {
		t.Fatal(err)
	}
	if _, _, err := svc.Create(ctx, alice); err != nil {
		t.Fatal(err)
	}
	if _, _, err := svc.Create(ctx, alice); !errors.Is(err, ErrTooManyPending) {
		t.Fatalf("fourth reservation: %v", err)
	}
	if _, _, err := svc.Create(ctx, bob); err != nil {
		t.Fatalf("another user's reservation: %v", err)
	}
	// Lapsed reservations cannot be uploaded to and stop counting.
	clock.Add(ReservationLifetime.Milliseconds() + 1)
	if err := upload(alice, id2, "too late"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("upload to a lapsed reservation: %v", err)
	}
	if _, err := svc.Download(ctx, "local.test", id2, FetchOptions{}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("download of a lapsed reservation: %v", err)
	}
	if _, _, err := svc.Create(ctx, alice); err != nil {
		t.Fatalf("reservation after the others lapsed: %v", err)
	}
	if err := svc.UploadReserved(ctx, "other.test", id2, Upload{Uploader: alice, Body: strings.NewReader("x")}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("upload to another server's media: %v", err)
	}
}

// fakeFetcher serves remote media from a map and counts fetches.
type fakeFetcher struct {
	mu      sync.Mutex
	content map[string]string
	fetches int
}

func (f *fakeFetcher) FetchMedia(_ context.Context, serverName, mediaID string, _ int64, _ time.Duration) (*RemoteMedia, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fetches++
	c, ok := f.content[serverName+"/"+mediaID]
	if !ok {
		return nil, ErrNotFound
	}
	return &RemoteMedia{ContentType: "image/png", Filename: "remote.png", Body: io.NopCloser(strings.NewReader(c))}, nil
}

func pngBytes(t *testing.T, w, h int) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			img.Set(x, y, color.RGBA{uint8(x), uint8(y), 200, 255})
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestRemoteCache(t *testing.T) {
	for _, e := range storagetest.Engines(t) {
		t.Run(e.Name, func(t *testing.T) { testRemoteCache(t, e.DSN) })
	}
}

func testRemoteCache(t *testing.T, dsn string) {
	ctx := context.Background()
	big := strings.Repeat("x", 2<<20)
	remote := &fakeFetcher{content: map[string]string{
		"remote.test/img": string(pngBytes(t, 300, 200)),
		"remote.test/big": big,
	}}
	svc, store := newTestService(t, dsn, nil)
	opts := FetchOptions{AllowRemote: true}
	if _, err := svc.Download(ctx, "remote.test", "img", opts); !errors.Is(err, ErrNotFound) {
		t.Fatalf("remote media without a fetcher: %v", err)
	}
	svc.SetRemoteFetcher(remote)
	// Concurrent first requests share one fetch; later ones use the cache.
	var wg sync.WaitGroup
	for i := 0; i < 5; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f, err := svc.Download(ctx, "remote.test", "img", opts)
			if err != nil {
				t.Error(err)
				return
			}
			f.Body.Close()
		}()
	}
	wg.Wait()
	f, err := svc.Download(ctx, "remote.test", "img", FetchOptions{}) // cached: no fetch needed
	if err != nil {
		t.Fatal(err)
	}
	f.Body.Close()
	if remote.fetches != 1 || f.Filename != "remote.png" || f.ContentType != "image/png" {
		t.Fatalf("fetches %d, file %+v", remote.fetches, f)
	}
	th, err := svc.Thumbnail(ctx, "remote.test", "img", ThumbnailRequest{Width: 32, Height: 32, Method: "crop"}, opts)
	if err != nil {
		t.Fatal(err)
	}
	th.Body.Close()
	if _, err := svc.Download(ctx, "remote.test", "missing", opts); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing remote media: %v", err)
	}
	if _, err := svc.Download(ctx, "remote.test", "big", opts); !errors.Is(err, ErrRemoteTooLarge) {
		t.Fatalf("oversized remote media: %v", err)
	}
	if n := len(files(t, store)); n != 2 {
		t.Fatalf("%d files, want the image and its thumbnail", n)
	}
	// Purging what was last accessed before a past time keeps it; purging
	// up to now removes it with its thumbnail, and the next request
	// fetches it again.
	if n, err := svc.PurgeRemoteCache(ctx, time.Now().Add(-time.Hour)); err != nil || n != 0 {
		t.Fatalf("purge of older media: %d %v", n, err)
	}
	if n, err := svc.PurgeRemoteCache(ctx, time.Now().Add(time.Second)); err != nil || n != 1 {
		t.Fatalf("purge: %d %v", n, err)
	}
	if n := len(files(t, store)); n != 0 {
		t.Fatalf("%d files left after the purge", n)
	}
	f, err = svc.Download(ctx, "remote.test", "img", opts)
	if err != nil {
		t.Fatal(err)
	}
	f.Body.Close()
	if remote.fetches != 4 {
		t.Fatalf("fetches %d after the purge", remote.fetches)
	}
}

func TestThumbnailImages(t *testing.T) {
	ctx := context.Background()
	svc, store := newTestService(t, storagetest.SQLite(t), nil)
	up := func(content []byte, ct string) string {
		id, err := svc.Upload(ctx, Upload{Uploader: "@a:local.test", ContentType: ct, Body: bytes.NewReader(content), DeclaredSize: -1})
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	thumb := func(id string, w, h int, method string, animated bool) (*File, image.Config, error) {
		f, err := svc.Thumbnail(ctx, "local.test", id, ThumbnailRequest{Width: w, Height: h, Method: method, Animated: animated}, FetchOptions{})
		if err != nil {
			return nil, image.Config{}, err
		}
		body := readAll(t, f)
		cfg, _, err := image.DecodeConfig(bytes.NewReader(body))
		if err != nil {
			t.Fatalf("thumbnail does not decode: %v", err)
		}
		return f, cfg, nil
	}
	for _, name := range []string{"photo.webp", "alpha.webp"} {
		raw, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		id := up(raw, "image/webp")
		f, cfg, err := thumb(id, 32, 32, "crop", false)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		wantType := map[string]string{"photo.webp": "image/jpeg", "alpha.webp": "image/png"}[name]
		if cfg.Width != 32 || cfg.Height != 32 || f.ContentType != wantType {
			t.Fatalf("%s: %dx%d %s", name, cfg.Width, cfg.Height, f.ContentType)
		}
		// Larger than the image: the original, as it is (a static WebP).
		f, cfg, err = thumb(id, 640, 480, "scale", false)
		if err != nil || f.ContentType != "image/webp" || cfg.Width > 200 {
			t.Fatalf("%s original: %v %+v %+v", name, err, f, cfg)
		}
	}
	before := len(files(t, store))
	id := up(pngBytes(t, 1000, 500), "image/png")
	for i := 0; i < 3; i++ {
		_, cfg, err := thumb(id, 300, 200, "scale", false)
		if err != nil || cfg.Width != 320 || cfg.Height != 160 {
			t.Fatalf("scale: %v %+v", err, cfg)
		}
	}
	if n := len(files(t, store)); n != before+2 {
		t.Fatalf("%d new files: the thumbnail should be generated once", n-before)
	}
	if _, err := svc.Thumbnail(ctx, "local.test", up([]byte("plain text"), "text/plain"),
		ThumbnailRequest{Width: 32, Height: 32, Method: "crop"}, FetchOptions{}); !errors.Is(err, ErrCannotThumbnail) {
		t.Fatalf("text: %v", err)
	}
	for _, bad := range []ThumbnailRequest{{Width: 0, Height: 1, Method: "crop"}, {Width: 1, Height: 1, Method: "stretch"}} {
		if _, err := svc.Thumbnail(ctx, "local.test", id, bad, FetchOptions{}); !errors.Is(err, ErrInvalidParam) {
			t.Fatalf("%+v: %v", bad, err)
		}
	}
}

// exifJPEG encodes img as a JPEG carrying an EXIF Orientation tag.
func exifJPEG(t *testing.T, img image.Image, orientation uint16, bo binary.ByteOrder) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, img, &jpeg.Options{Quality: 95}); err != nil {
		t.Fatal(err)
	}
	tiff := make([]byte, 8+2+12+4)
	if bo == binary.LittleEndian {
		copy(tiff, "II*\x00")
	} else {
		copy(tiff, "MM\x00*")
	}
	bo.PutUint32(tiff[4:], 8)
	bo.PutUint16(tiff[8:], 1)       // one entry
	bo.PutUint16(tiff[10:], 0x0112) // Orientation
	bo.PutUint16(tiff[12:], 3)      // SHORT
	bo.PutUint32(tiff[14:], 1)      // count
	bo.PutUint16(tiff[18:], orientation)
	app1 := append([]byte("Exif\x00\x00"), tiff...)
	seg := []byte{0xFF, 0xE1, 0, 0}
	binary.BigEndian.PutUint16(seg[2:], uint16(len(app1)+2))
	raw := buf.Bytes()
	return append(append(append([]byte{}, raw[:2]...), append(seg, app1...)...), raw[2:]...)
}

func TestOrientation(t *testing.T) {
	// A 3×2 image whose top-left pixel is marked; where it lands says how
	// the image was turned.
	src := image.NewRGBA(image.Rect(0, 0, 3, 2))
	src.Set(0, 0, color.RGBA{255, 0, 0, 255})
	want := map[int]image.Point{1: {0, 0}, 2: {2, 0}, 3: {2, 1}, 4: {0, 1}, 5: {0, 0}, 6: {1, 0}, 7: {1, 2}, 8: {0, 2}}
	for o, p := range want {
		out := orient(src, o)
		if swapsAxes(o) != (out.Bounds().Dx() == 2) {
			t.Errorf("orientation %d: bounds %v", o, out.Bounds())
		}
		if r, _, _, _ := out.At(p.X, p.Y).RGBA(); r == 0 {
			t.Errorf("orientation %d: marked pixel not at %v", o, p)
		}
		for _, bo := range []binary.ByteOrder{binary.LittleEndian, binary.BigEndian} {
			if got := jpegOrientation(bytes.NewReader(exifJPEG(t, src, uint16(o), bo))); got != o {
				t.Errorf("orientation %d read as %d", o, got)
			}
		}
	}
	if jpegOrientation(bytes.NewReader(pngBytes(t, 2, 2))) != 1 || jpegOrientation(strings.NewReader("\xff\xd8\xff")) != 1 {
		t.Error("orientation of non-EXIF data")
	}

	// A sideways photo (left half red, right half blue) tagged "turn
	// clockwise" is thumbnailed upright: 300×400, red on top.
	ctx := context.Background()
	svc, _ := newTestService(t, storagetest.SQLite(t), nil)
	img := image.NewRGBA(image.Rect(0, 0, 400, 300))
	for y := 0; y < 300; y++ {
		for x := 0; x < 400; x++ {
			c := color.RGBA{0, 0, 255, 255}
			if x < 200 {
				c = color.RGBA{255, 0, 0, 255}
			}
			img.Set(x, y, c)
		}
	}
	id, err := svc.Upload(ctx, Upload{Uploader: "@a:local.test", ContentType: "image/jpeg",
		Body: bytes.NewReader(exifJPEG(t, img, 6, binary.BigEndian)), DeclaredSize: -1})
	if err != nil {
		t.Fatal(err)
	}
	f, err := svc.Thumbnail(ctx, "local.test", id, ThumbnailRequest{Width: 320, Height: 240, Method: "scale"}, FetchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	th, err := jpeg.Decode(bytes.NewReader(readAll(t, f)))
	if err != nil {
		t.Fatal(err)
	}
	if b := th.Bounds(); b.Dx() != 180 || b.Dy() != 240 {
		t.Fatalf("thumbnail %v, want 180×240", b)
	}
	if r, _, bl, _ := th.At(90, 10).RGBA(); r < bl {
		t.Fatal("top of the thumbnail is not red")
	}
	if r, _, bl, _ := th.At(90, 230).RGBA(); r > bl {
		t.Fatal("bottom of the thumbnail is not blue")
	}
}

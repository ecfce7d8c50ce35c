package clientapi_test

import (
	"bytes"
	"compress/zlib"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"image"
	"image/color"
	"image/gif"
	"image/jpeg"
	"image/png"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parley-chat/parley/homeserver/config"
	"github.com/parley-chat/parley/homeserver/hstest"
	"github.com/parley-chat/parley/homeserver/media"
	"github.com/parley-chat/parley/storage/storagetest"
)

// The media repository over real HTTP. Uploads and downloads go through
// raw requests: the tests look at headers and bodies byte for byte.

const (
	mediaV1 = "/_matrix/client/v1/media"
	mediaV3 = "/_matrix/media/v3"
)

// mediaRequest makes a raw request and returns the answer with its body
// read. header holds extra request headers.
func (e *env) mediaRequest(method, path, token string, body io.Reader, header map[string]string) (*http.Response, []byte) {
	e.t.Helper()
	req, err := http.NewRequest(method, e.srv.ClientURL+path, body)
	if err != nil {
		e.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp, raw
}

// upload posts content and returns the media ID of its mxc:// URI.
func (e *env) upload(token, contentType, filename string, content []byte) string {
	e.t.Helper()
	path := mediaV3 + "/upload"
	if filename != "" {
		path += "?filename=" + url.QueryEscape(filename)
	}
	hdr := map[string]string{}
	if contentType != "" {
		hdr["Content-Type"] = contentType
	}
	resp, raw := e.mediaRequest(http.MethodPost, path, token, bytes.NewReader(content), hdr)
	if resp.StatusCode != http.StatusOK {
		e.t.Fatalf("upload: %d %s", resp.StatusCode, raw)
	}
	var out struct {
		ContentURI string `json:"content_uri"`
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		e.t.Fatal(err)
	}
	prefix := "mxc://" + e.srv.Config.ServerName + "/"
	if !strings.HasPrefix(out.ContentURI, prefix) || !media.ValidMediaID(strings.TrimPrefix(out.ContentURI, prefix)) {
		e.t.Fatalf("content_uri %q", out.ContentURI)
	}
	return strings.TrimPrefix(out.ContentURI, prefix)
}

// mediaError checks a raw Matrix error answer.
func mediaError(t *testing.T, what string, resp *http.Response, raw []byte, status int, errcode string) {
	t.Helper()
	var body map[string]any
	_ = json.Unmarshal(raw, &body)
	wantError(t, what, resp.StatusCode, body, status, errcode)
}

// contentFiles counts the files in the server's media store.
func contentFiles(t *testing.T, srv *hstest.Server) int {
	t.Helper()
	n := 0
	err := filepath.WalkDir(srv.Config.Media.Path, func(_ string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && d.Name() == "tmp" {
			return filepath.SkipDir
		}
		if !d.IsDir() {
			n++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func wantSecurityHeaders(t *testing.T, what string, h http.Header) {
	t.Helper()
	if h.Get("Content-Security-Policy") != media.ContentSecurityPolicy || h.Get("X-Content-Type-Options") != "nosniff" ||
		h.Get("Cross-Origin-Resource-Policy") != "cross-origin" {
		t.Fatalf("%s: security headers missing: %v", what, h)
	}
}

func TestMediaUploadDownload(t *testing.T) {
	onEachEngine(t, nil, func(t *testing.T, e *env) {
		alice := e.register("alice", "password-alice").AccessToken
		bob := e.register("bob", "password-bob").AccessToken
		content := []byte("hello, media repository\n")
		id := e.upload(alice, "text/plain; charset=utf-8", "Grüße aus Köln.txt", content)

		resp, raw := e.mediaRequest(http.MethodGet, mediaV1+"/download/localhost/"+id, bob, nil, nil)
		if resp.StatusCode != http.StatusOK || !bytes.Equal(raw, content) {
			t.Fatalf("download: %d %q", resp.StatusCode, raw)
		}
		if ct := resp.Header.Get("Content-Type"); ct != "text/plain; charset=utf-8" {
			t.Fatalf("Content-Type %q", ct)
		}
		wantDisp := `inline; filename="Gr__e aus K_ln.txt"; filename*=utf-8''Gr%C3%BC%C3%9Fe%20aus%20K%C3%B6ln.txt`
		if cd := resp.Header.Get("Content-Disposition"); cd != wantDisp {
			t.Fatalf("Content-Disposition %q, want %q", cd, wantDisp)
		}
		wantSecurityHeaders(t, "download", resp.Header)

		// The file name in the path replaces the uploaded one.
		resp, _ = e.mediaRequest(http.MethodGet, mediaV1+"/download/localhost/"+id+"/other.txt", bob, nil, nil)
		if cd := resp.Header.Get("Content-Disposition"); resp.StatusCode != 200 || cd != `inline; filename="other.txt"` {
			t.Fatalf("override file name: %d %q", resp.StatusCode, cd)
		}
		// Ranges work (video players seek).
		resp, raw = e.mediaRequest(http.MethodGet, mediaV1+"/download/localhost/"+id, bob, nil, map[string]string{"Range": "bytes=7-11"})
		if resp.StatusCode != http.StatusPartialContent || string(raw) != "media" {
			t.Fatalf("range: %d %q", resp.StatusCode, raw)
		}
		// The authenticated endpoints need a token; the deprecated ones
		// are frozen by default.
		resp, raw = e.mediaRequest(http.MethodGet, mediaV1+"/download/localhost/"+id, "", nil, nil)
		mediaError(t, "download without a token", resp, raw, 401, "M_MISSING_TOKEN")
		resp, raw = e.mediaRequest(http.MethodGet, mediaV3+"/download/localhost/"+id, "", nil, nil)
		mediaError(t, "frozen download", resp, raw, 404, "M_NOT_FOUND")
		resp, raw = e.mediaRequest(http.MethodGet, mediaV3+"/thumbnail/localhost/"+id+"?width=32&height=32", "", nil, nil)
		mediaError(t, "frozen thumbnail", resp, raw, 404, "M_NOT_FOUND")
		resp, raw = e.mediaRequest(http.MethodPost, mediaV3+"/upload", "", strings.NewReader("x"), nil)
		mediaError(t, "upload without a token", resp, raw, 401, "M_MISSING_TOKEN")
		resp, raw = e.mediaRequest(http.MethodGet, mediaV1+"/download/localhost/doesNotExist", bob, nil, nil)
		mediaError(t, "unknown media", resp, raw, 404, "M_NOT_FOUND")
		// A server that cannot be reached (here: loopback, which federation
		// refuses to dial unless allowed) is a 502, not a missing file.
		resp, raw = e.mediaRequest(http.MethodGet, mediaV1+"/download/127.0.0.1:1/abc", bob, nil, nil)
		mediaError(t, "remote media of an unreachable server", resp, raw, 502, "M_UNKNOWN")

		// Identical content is stored once, whoever uploads it.
		before := contentFiles(t, e.srv)
		id2 := e.upload(bob, "text/plain", "", content)
		if id2 == id || contentFiles(t, e.srv) != before {
			t.Fatalf("identical upload: id %s, %d files, had %d", id2, contentFiles(t, e.srv), before)
		}
		resp, _ = e.mediaRequest(http.MethodGet, mediaV1+"/download/localhost/"+id2, alice, nil, nil)
		if cd := resp.Header.Get("Content-Disposition"); cd != "inline" {
			t.Fatalf("no file name: Content-Disposition %q", cd)
		}
		// Without a Content-Type the upload is application/octet-stream,
		// which is not inline-safe.
		id3 := e.upload(alice, "", "blob.bin", []byte{0, 1, 2})
		resp, _ = e.mediaRequest(http.MethodGet, mediaV1+"/download/localhost/"+id3, alice, nil, nil)
		if resp.Header.Get("Content-Type") != "application/octet-stream" ||
			resp.Header.Get("Content-Disposition") != `attachment; filename="blob.bin"` {
			t.Fatalf("octet-stream: %v", resp.Header)
		}

		for _, path := range []string{mediaV1 + "/config", mediaV3 + "/config"} {
			status, body, _ := e.call(http.MethodGet, path, alice, nil)
			if status != 200 || body["m.upload.size"] != float64(e.srv.Config.Media.MaxUploadBytes) {
				t.Fatalf("%s: %d %v", path, status, body)
			}
		}
	})
}

func TestMediaUnauthenticatedAllowed(t *testing.T) {
	onEachEngine(t, func(c *config.Config) { c.Media.AllowUnauthenticated = true }, func(t *testing.T, e *env) {
		alice := e.register("alice", "password-alice").AccessToken
		id := e.upload(alice, "image/png", "dot.png", encodePNG(t, testImage(64, 48)))
		resp, raw := e.mediaRequest(http.MethodGet, mediaV3+"/download/localhost/"+id, "", nil, nil)
		if resp.StatusCode != 200 || len(raw) == 0 {
			t.Fatalf("legacy download: %d", resp.StatusCode)
		}
		wantSecurityHeaders(t, "legacy download", resp.Header)
		resp, _ = e.mediaRequest(http.MethodGet, "/_matrix/media/r0/thumbnail/localhost/"+id+"?width=32&height=32&method=crop", "", nil, nil)
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "image/png" {
			t.Fatalf("legacy thumbnail: %d %v", resp.StatusCode, resp.Header)
		}
	})
}

// patternReader produces n pseudo-random bytes without holding them.
type patternReader struct {
	rng *rand.ChaCha8
	n   int64
}

func (p *patternReader) Read(b []byte) (int, error) {
	if p.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(b)) > p.n {
		b = b[:p.n]
	}
	n, _ := p.rng.Read(b)
	p.n -= int64(n)
	return n, nil
}

// TestMediaLargeUploadStreams uploads and downloads 100 MB and checks that
// the process's heap never grows by anything near that: uploads stream to
// disk and downloads stream from it. It does not run in parallel, so that
// the heap it measures is its own.
func TestMediaLargeUploadStreams(t *testing.T) {
	if testing.Short() {
		t.Skip("100 MB upload skipped in -short mode")
	}
	const size = 100 << 20
	for _, eng := range storagetest.Engines(t) {
		t.Run(eng.Name, func(t *testing.T) {
			srv := hstest.Start(t, hstest.Options{DSN: eng.DSN, Configure: func(c *config.Config) {
				c.RateLimits = config.RateLimits{}
				c.Media.MaxUploadBytes = 128 << 20
			}})
			e := &env{t: t, srv: srv}
			token := e.register("alice", "password-alice").AccessToken

			var peak uint64
			var base, end runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&base)
			peak = base.HeapAlloc
			stop := make(chan struct{})
			var sampler sync.WaitGroup
			sampler.Add(1)
			go func() {
				defer sampler.Done()
				tick := time.NewTicker(20 * time.Millisecond)
				defer tick.Stop()
				for {
					select {
					case <-stop:
						return
					case <-tick.C:
						var ms runtime.MemStats
						runtime.ReadMemStats(&ms)
						peak = max(peak, ms.HeapAlloc)
					}
				}
			}()

			sent := sha256.New()
			body := io.TeeReader(&patternReader{rng: rand.NewChaCha8([32]byte{1}), n: size}, sent)
			req, _ := http.NewRequest(http.MethodPost, srv.ClientURL+mediaV3+"/upload?filename=big.bin", body)
			req.ContentLength = size
			req.Header.Set("Authorization", "Bearer "+token)
			req.Header.Set("Content-Type", "application/octet-stream")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			var up struct {
				ContentURI string `json:"content_uri"`
			}
			err = json.NewDecoder(resp.Body).Decode(&up)
			resp.Body.Close()
			if resp.StatusCode != 200 || err != nil {
				t.Fatalf("upload: %d %v", resp.StatusCode, err)
			}

			req, _ = http.NewRequest(http.MethodGet, srv.ClientURL+mediaV1+"/download/"+strings.TrimPrefix(up.ContentURI, "mxc://"), nil)
			req.Header.Set("Authorization", "Bearer "+token)
			resp, err = http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			got := sha256.New()
			n, err := io.Copy(got, resp.Body)
			resp.Body.Close()
			close(stop)
			sampler.Wait()
			runtime.ReadMemStats(&end)
			if err != nil || n != size || !bytes.Equal(got.Sum(nil), sent.Sum(nil)) {
				t.Fatalf("download: %d bytes, %v, hash match %v", n, err, bytes.Equal(got.Sum(nil), sent.Sum(nil)))
			}
			if resp.Header.Get("Content-Length") != fmt.Sprint(size) {
				t.Fatalf("Content-Length %q", resp.Header.Get("Content-Length"))
			}
			const mib = 1 << 20
			growth := int64(peak) - int64(base.HeapAlloc)
			t.Logf("100 MiB up and down: heap %.1f MiB before, peak %.1f MiB (+%.1f), allocated %.1f MiB in total during the transfer",
				float64(base.HeapAlloc)/mib, float64(peak)/mib, float64(growth)/mib, float64(end.TotalAlloc-base.TotalAlloc)/mib)
			if growth > 32*mib {
				t.Fatalf("the heap grew by %.1f MiB for a 100 MiB file: something buffers it", float64(growth)/mib)
			}
		})
	}
}

func TestMediaLimits(t *testing.T) {
	onEachEngine(t, func(c *config.Config) {
		c.Media.MaxUploadBytes = 64 << 10
		c.Media.MaxBytesPerUser = 100 << 10
	}, func(t *testing.T, e *env) {
		alice := e.register("alice", "password-alice").AccessToken
		big := bytes.Repeat([]byte("x"), 100<<10)
		// Declared too large: refused before the body is read.
		resp, raw := e.mediaRequest(http.MethodPost, mediaV3+"/upload", alice, bytes.NewReader(big), nil)
		mediaError(t, "declared too large", resp, raw, 413, "M_TOO_LARGE")
		// Chunked, no declared size: refused while streaming.
		resp, raw = e.mediaRequest(http.MethodPost, mediaV3+"/upload", alice, io.MultiReader(bytes.NewReader(big)), nil)
		mediaError(t, "streamed too large", resp, raw, 413, "M_TOO_LARGE")
		if n := contentFiles(t, e.srv); n != 0 {
			t.Fatalf("refused uploads left %d files", n)
		}
		// Exactly the limit is fine; the quota (100 KiB) then refuses the
		// second upload with M_FORBIDDEN, as the spec asks for quotas.
		e.upload(alice, "application/octet-stream", "", big[:64<<10])
		resp, raw = e.mediaRequest(http.MethodPost, mediaV3+"/upload", alice, bytes.NewReader(big[:40<<10]), nil)
		mediaError(t, "over quota", resp, raw, 403, "M_FORBIDDEN")
		bob := e.register("bob", "password-bob").AccessToken
		e.upload(bob, "application/octet-stream", "", big[:40<<10])
		// JSON endpoints keep their own, smaller limit.
		resp, raw = e.mediaRequest(http.MethodPost, v3+"/user/@alice:localhost/filter", alice,
			strings.NewReader(`{"x":"`+strings.Repeat("y", 2<<20)+`"}`), nil)
		mediaError(t, "large JSON body", resp, raw, 413, "M_TOO_LARGE")
		// A bad file name.
		resp, raw = e.mediaRequest(http.MethodPost, mediaV3+"/upload?filename=%FF%FE", alice, strings.NewReader("x"), nil)
		mediaError(t, "invalid UTF-8 file name", resp, raw, 400, "M_INVALID_PARAM")
	})
}

func TestMediaBadIDs(t *testing.T) {
	onEachEngine(t, nil, func(t *testing.T, e *env) {
		alice := e.register("alice", "password-alice").AccessToken
		// A file outside the media store that traversal would reach.
		secret := filepath.Join(e.srv.Config.DataDir, "secret.txt")
		if err := os.WriteFile(secret, []byte("TOP SECRET"), 0o600); err != nil {
			t.Fatal(err)
		}
		for _, p := range []string{
			"/download/localhost/bad.id",
			"/download/localhost/..",
			"/download/localhost/%2e%2e",
			"/download/localhost/..%2F..%2Fsecret.txt",
			"/download/localhost/%2E%2E%2F%2E%2E%2Fsecret.txt",
			"/download/localhost/abc%2F..%2F..%2F..%2Fsecret.txt",
			"/download/localhost/../../../secret.txt",
			"/download/..%2F..%2F/abc",
			"/download/local%2Fhost/abc",
			"/download/bad_server!/abc",
			"/download/localhost/abc%00",
			"/download/localhost/%C3%A4bc",
			"/thumbnail/localhost/..%2Fsecret.txt?width=32&height=32",
			"/thumbnail/localhost/%2e%2e?width=32&height=32",
		} {
			resp, raw := e.mediaRequest(http.MethodGet, mediaV1+p, alice, nil, nil)
			if (resp.StatusCode != 400 && resp.StatusCode != 404) || bytes.Contains(raw, []byte("SECRET")) {
				t.Errorf("%s: %d %q", p, resp.StatusCode, raw)
			}
			var body map[string]any
			if json.Unmarshal(raw, &body) != nil || body["errcode"] == nil {
				t.Errorf("%s: not a Matrix error: %q", p, raw)
			}
		}
		resp, raw := e.mediaRequest(http.MethodPut, mediaV3+"/upload/localhost/..%2F..%2Fsecret.txt", alice, strings.NewReader("x"), nil)
		if resp.StatusCode != 400 && resp.StatusCode != 404 {
			t.Errorf("upload to a traversal ID: %d %s", resp.StatusCode, raw)
		}
		resp, raw = e.mediaRequest(http.MethodGet, mediaV1+"/download/localhost/bad.id", alice, nil, nil)
		mediaError(t, "bad media ID", resp, raw, 400, "M_INVALID_PARAM")
	})
}

func testImage(w, h int) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			img.Set(x, y, color.RGBA{uint8(x * 255 / w), uint8(y * 255 / h), 100, 255})
		}
	}
	return img
}

func encodePNG(t *testing.T, img image.Image) []byte {
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// bombPNG is a valid PNG header declaring a w×h image with almost no data:
// decoding it would allocate w×h×3 bytes.
func bombPNG(w, h uint32) []byte {
	var buf bytes.Buffer
	buf.WriteString("\x89PNG\r\n\x1a\n")
	chunk := func(typ string, data []byte) {
		_ = binary.Write(&buf, binary.BigEndian, uint32(len(data)))
		buf.WriteString(typ)
		buf.Write(data)
		crc := crc32.NewIEEE()
		crc.Write([]byte(typ))
		crc.Write(data)
		_ = binary.Write(&buf, binary.BigEndian, crc.Sum32())
	}
	ihdr := make([]byte, 13)
	binary.BigEndian.PutUint32(ihdr[0:], w)
	binary.BigEndian.PutUint32(ihdr[4:], h)
	ihdr[8], ihdr[9] = 8, 2 // 8-bit RGB
	chunk("IHDR", ihdr)
	var z bytes.Buffer
	zw := zlib.NewWriter(&z)
	_, _ = zw.Write(make([]byte, 1024))
	zw.Close()
	chunk("IDAT", z.Bytes())
	chunk("IEND", nil)
	return buf.Bytes()
}

func TestMediaThumbnails(t *testing.T) {
	onEachEngine(t, nil, func(t *testing.T, e *env) {
		alice := e.register("alice", "password-alice").AccessToken
		src := testImage(400, 300)
		var jpg, gf bytes.Buffer
		if err := jpeg.Encode(&jpg, src, nil); err != nil {
			t.Fatal(err)
		}
		pal := image.NewPaletted(src.Bounds(), []color.Color{color.Black, color.White, color.RGBA{255, 0, 0, 255}})
		for i := range pal.Pix {
			pal.Pix[i] = uint8(i % 3)
		}
		anim := &gif.GIF{Image: []*image.Paletted{pal, pal}, Delay: []int{10, 10}}
		if err := gif.EncodeAll(&gf, anim); err != nil {
			t.Fatal(err)
		}
		webp, err := os.ReadFile("../homeserver/media/testdata/photo.webp") // 200×150
		if err != nil {
			t.Fatal(err)
		}
		images := []struct {
			name, contentType string
			data              []byte
			w, h              int
		}{
			{"jpeg", "image/jpeg", jpg.Bytes(), 400, 300},
			{"png", "image/png", encodePNG(t, src), 400, 300},
			{"gif", "image/gif", gf.Bytes(), 400, 300},
			{"webp", "image/webp", webp, 200, 150},
		}
		for _, img := range images {
			id := e.upload(alice, img.contentType, img.name+".img", img.data)
			for _, tc := range []struct {
				query string
				w, h  int
			}{
				{"width=32&height=32&method=crop", 32, 32},
				{"width=90&height=60&method=crop", 96, 96},
				{"width=100&height=100&method=scale", 320 * img.w / max(img.w, 320), 240 * img.h / max(img.h, 240)},
			} {
				path := mediaV1 + "/thumbnail/localhost/" + id + "?" + tc.query
				resp, raw := e.mediaRequest(http.MethodGet, path, alice, nil, nil)
				if resp.StatusCode != 200 {
					t.Fatalf("%s %s: %d %s", img.name, tc.query, resp.StatusCode, raw)
				}
				cfg, format, err := image.DecodeConfig(bytes.NewReader(raw))
				if err != nil {
					t.Fatalf("%s %s: thumbnail does not decode: %v", img.name, tc.query, err)
				}
				ct := resp.Header.Get("Content-Type")
				if ct != "image/"+format || (ct != "image/png" && ct != "image/jpeg" && ct != "image/webp") {
					t.Fatalf("%s %s: Content-Type %s for a %s", img.name, tc.query, ct, format)
				}
				if cfg.Width != tc.w || cfg.Height != tc.h {
					t.Fatalf("%s %s: %dx%d, want %dx%d", img.name, tc.query, cfg.Width, cfg.Height, tc.w, tc.h)
				}
				if cd := resp.Header.Get("Content-Disposition"); !strings.HasPrefix(cd, `inline; filename="thumbnail.`) {
					t.Fatalf("%s: Content-Disposition %q", img.name, cd)
				}
				wantSecurityHeaders(t, "thumbnail", resp.Header)
			}
			// Larger than any thumbnail: never upscaled.
			resp, raw := e.mediaRequest(http.MethodGet, mediaV1+"/thumbnail/localhost/"+id+"?width=3000&height=3000", alice, nil, nil)
			cfg, _, err := image.DecodeConfig(bytes.NewReader(raw))
			if resp.StatusCode != 200 || err != nil || cfg.Width != img.w || cfg.Height != img.h {
				t.Fatalf("%s at 3000x3000: %d %v %+v", img.name, resp.StatusCode, err, cfg)
			}
		}
		// The animated GIF, small enough, is served as it is when animation
		// is asked for, and as a still PNG otherwise.
		gifID := e.upload(alice, "image/gif", "", gf.Bytes())
		resp, raw := e.mediaRequest(http.MethodGet, mediaV1+"/thumbnail/localhost/"+gifID+"?width=800&height=600&animated=true", alice, nil, nil)
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "image/gif" || !bytes.Equal(raw, gf.Bytes()) {
			t.Fatalf("animated: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		resp, _ = e.mediaRequest(http.MethodGet, mediaV1+"/thumbnail/localhost/"+gifID+"?width=800&height=600&animated=false", alice, nil, nil)
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "image/png" {
			t.Fatalf("still: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
		}

		// Thumbnails are generated once and stored.
		pngID := e.upload(alice, "image/png", "", encodePNG(t, testImage(500, 500)))
		before := contentFiles(t, e.srv)
		for i := 0; i < 3; i++ {
			resp, _ := e.mediaRequest(http.MethodGet, mediaV1+"/thumbnail/localhost/"+pngID+"?width=64&height=64&method=crop", alice, nil, nil)
			if resp.StatusCode != 200 {
				t.Fatal(resp.Status)
			}
		}
		if n := contentFiles(t, e.srv) - before; n != 1 {
			t.Fatalf("%d files for one thumbnail asked three times", n)
		}

		// What cannot be thumbnailed.
		textID := e.upload(alice, "text/plain", "", []byte("not an image"))
		resp, raw = e.mediaRequest(http.MethodGet, mediaV1+"/thumbnail/localhost/"+textID+"?width=32&height=32", alice, nil, nil)
		mediaError(t, "thumbnail of text", resp, raw, 400, "M_UNKNOWN")
		// A PNG of a few hundred bytes declaring 100000×100000 pixels is
		// refused from its header, without decoding.
		bomb := bombPNG(100000, 100000)
		if len(bomb) > 1024 {
			t.Fatalf("bomb is %d bytes", len(bomb))
		}
		bombID := e.upload(alice, "image/png", "", bomb)
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		heapBefore := ms.HeapAlloc
		resp, raw = e.mediaRequest(http.MethodGet, mediaV1+"/thumbnail/localhost/"+bombID+"?width=32&height=32&method=crop", alice, nil, nil)
		mediaError(t, "decompression bomb", resp, raw, 413, "M_TOO_LARGE")
		runtime.ReadMemStats(&ms)
		if ms.HeapAlloc > heapBefore+256<<20 {
			t.Fatalf("the bomb grew the heap from %d to %d", heapBefore, ms.HeapAlloc)
		}
		for _, q := range []string{"height=32", "width=32", "width=0&height=32", "width=-1&height=32", "width=1.5&height=32",
			"width=32&height=32&method=stretch", "width=32&height=32&animated=maybe", "width=32&height=32&timeout_ms=soon"} {
			resp, raw := e.mediaRequest(http.MethodGet, mediaV1+"/thumbnail/localhost/"+pngID+"?"+q, alice, nil, nil)
			if resp.StatusCode != 400 {
				t.Fatalf("%s: %d %s", q, resp.StatusCode, raw)
			}
		}
	})
}

func TestMediaActiveContent(t *testing.T) {
	onEachEngine(t, nil, func(t *testing.T, e *env) {
		alice := e.register("alice", "password-alice").AccessToken
		for _, tc := range []struct{ contentType, body string }{
			{"text/html", "<html><script>alert(document.cookie)</script></html>"},
			{"text/html; charset=utf-8", "<p>hi</p>"},
			{"image/svg+xml", `<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>`},
			{"application/javascript", "alert(1)"},
			{"text/javascript", "alert(1)"},
			{"application/xhtml+xml", "<html xmlns='http://www.w3.org/1999/xhtml'><script>alert(1)</script></html>"},
			{"text/xml", "<x/>"},
			{"application/pdf", "%PDF-1.4"},
		} {
			id := e.upload(alice, tc.contentType, "page.html", []byte(tc.body))
			resp, raw := e.mediaRequest(http.MethodGet, mediaV1+"/download/localhost/"+id, alice, nil, nil)
			if resp.StatusCode != 200 || string(raw) != tc.body {
				t.Fatalf("%s: %d", tc.contentType, resp.StatusCode)
			}
			if resp.Header.Get("Content-Type") != tc.contentType {
				t.Fatalf("%s served as %q", tc.contentType, resp.Header.Get("Content-Type"))
			}
			if cd := resp.Header.Get("Content-Disposition"); cd != `attachment; filename="page.html"` {
				t.Fatalf("%s: Content-Disposition %q", tc.contentType, cd)
			}
			wantSecurityHeaders(t, tc.contentType, resp.Header)
			// Even a file name in the path cannot make it inline.
			resp, _ = e.mediaRequest(http.MethodGet, mediaV1+"/download/localhost/"+id+"/x.png", alice, nil, nil)
			if !strings.HasPrefix(resp.Header.Get("Content-Disposition"), "attachment;") {
				t.Fatalf("%s with a file name: %q", tc.contentType, resp.Header.Get("Content-Disposition"))
			}
		}
	})
}

func TestMediaAsyncUpload(t *testing.T) {
	onEachEngine(t, nil, func(t *testing.T, e *env) {
		alice := e.register("alice", "password-alice").AccessToken
		bob := e.register("bob", "password-bob").AccessToken
		status, body, _ := e.call(http.MethodPost, "/_matrix/media/v1/create", alice, nil)
		uri, _ := body["content_uri"].(string)
		expires, _ := body["unused_expires_at"].(float64)
		if status != 200 || !strings.HasPrefix(uri, "mxc://localhost/") ||
			int64(expires) < time.Now().Add(23*time.Hour).UnixMilli() {
			t.Fatalf("create: %d %v", status, body)
		}
		id := strings.TrimPrefix(uri, "mxc://localhost/")

		resp, raw := e.mediaRequest(http.MethodGet, mediaV1+"/download/localhost/"+id+"?timeout_ms=50", alice, nil, nil)
		mediaError(t, "download of pending media", resp, raw, 504, "M_NOT_YET_UPLOADED")
		resp, raw = e.mediaRequest(http.MethodGet, mediaV1+"/thumbnail/localhost/"+id+"?width=32&height=32&timeout_ms=50", alice, nil, nil)
		mediaError(t, "thumbnail of pending media", resp, raw, 504, "M_NOT_YET_UPLOADED")

		// A download that waits gets the content as soon as it arrives.
		content := encodePNG(t, testImage(40, 30))
		type result struct {
			status int
			body   []byte
		}
		done := make(chan result, 1)
		go func() {
			req, _ := http.NewRequest(http.MethodGet, e.srv.ClientURL+mediaV1+"/download/localhost/"+id+"?timeout_ms=30000", nil)
			req.Header.Set("Authorization", "Bearer "+bob)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				done <- result{}
				return
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			done <- result{resp.StatusCode, b}
		}()
		time.Sleep(100 * time.Millisecond)

		put := func(token, mediaID string, data []byte) (*http.Response, []byte) {
			return e.mediaRequest(http.MethodPut, mediaV3+"/upload/localhost/"+mediaID+"?filename=late.png", token,
				bytes.NewReader(data), map[string]string{"Content-Type": "image/png"})
		}
		resp, raw = put(bob, id, content)
		mediaError(t, "upload by another user", resp, raw, 403, "M_FORBIDDEN")
		resp, raw = put(alice, id, content)
		if resp.StatusCode != 200 || strings.TrimSpace(string(raw)) != "{}" {
			t.Fatalf("upload: %d %s", resp.StatusCode, raw)
		}
		select {
		case r := <-done:
			if r.status != 200 || !bytes.Equal(r.body, content) {
				t.Fatalf("waiting download: %d, %d bytes", r.status, len(r.body))
			}
		case <-time.After(10 * time.Second):
			t.Fatal("waiting download did not wake up")
		}
		resp, raw = put(alice, id, []byte("other"))
		mediaError(t, "second upload", resp, raw, 409, "M_CANNOT_OVERWRITE_MEDIA")
		resp, raw = put(alice, "neverCreated", content)
		mediaError(t, "upload to an unknown ID", resp, raw, 404, "M_NOT_FOUND")
		resp, raw = e.mediaRequest(http.MethodPut, mediaV3+"/upload/elsewhere.example/"+id, alice, strings.NewReader("x"), nil)
		mediaError(t, "upload to another server's ID", resp, raw, 404, "M_NOT_FOUND")
		resp, raw = e.mediaRequest(http.MethodGet, mediaV1+"/download/localhost/"+id, alice, nil, nil)
		if resp.StatusCode != 200 || !bytes.Equal(raw, content) || resp.Header.Get("Content-Disposition") != `inline; filename="late.png"` {
			t.Fatalf("download: %d %v", resp.StatusCode, resp.Header)
		}
		// Too many pending reservations: 429.
		var last int
		for i := 0; i < 20 && last != 429; i++ {
			last, body, _ = e.call(http.MethodPost, "/_matrix/media/v1/create", bob, nil)
		}
		if last != 429 || body["errcode"] != "M_LIMIT_EXCEEDED" {
			t.Fatalf("pending limit: %d %v", last, body)
		}
	})
}

func TestMediaAdmin(t *testing.T) {
	onEachEngine(t, nil, func(t *testing.T, e *env) {
		if _, err := e.srv.Users.Register(ctx, "root", "password-root", true); err != nil {
			t.Fatal(err)
		}
		adminCli, err := e.login("root", "password-root", "")
		if err != nil {
			t.Fatal(err)
		}
		admin := adminCli.AccessToken
		alice := e.register("alice", "password-alice").AccessToken
		id := e.upload(alice, "image/png", "", encodePNG(t, testImage(200, 200)))
		thumb := mediaV1 + "/thumbnail/localhost/" + id + "?width=32&height=32&method=crop"
		if resp, _ := e.mediaRequest(http.MethodGet, thumb, alice, nil, nil); resp.StatusCode != 200 {
			t.Fatal(resp.Status)
		}

		q := "/_parley/admin/v1/media/quarantine/localhost/" + id
		status, body, _ := e.call(http.MethodPost, q, alice, nil)
		wantError(t, "quarantine by a non-admin", status, body, 403, "M_FORBIDDEN")
		status, body, _ = e.call(http.MethodPost, q, admin, nil)
		wantOK(t, "quarantine", status, body)
		for _, p := range []string{mediaV1 + "/download/localhost/" + id, thumb} {
			resp, raw := e.mediaRequest(http.MethodGet, p, alice, nil, nil)
			mediaError(t, "quarantined "+p, resp, raw, 404, "M_NOT_FOUND")
		}
		status, body, _ = e.call(http.MethodDelete, q, admin, nil)
		wantOK(t, "release", status, body)
		if resp, _ := e.mediaRequest(http.MethodGet, mediaV1+"/download/localhost/"+id, alice, nil, nil); resp.StatusCode != 200 {
			t.Fatalf("released media: %s", resp.Status)
		}
		status, body, _ = e.call(http.MethodPost, "/_parley/admin/v1/media/quarantine/localhost/nope", admin, nil)
		wantError(t, "quarantine of unknown media", status, body, 404, "M_NOT_FOUND")

		del := "/_parley/admin/v1/media/localhost/" + id
		status, body, _ = e.call(http.MethodDelete, del, alice, nil)
		wantError(t, "delete by a non-admin", status, body, 403, "M_FORBIDDEN")
		status, body, _ = e.call(http.MethodDelete, del, admin, nil)
		wantOK(t, "delete", status, body)
		resp, raw := e.mediaRequest(http.MethodGet, mediaV1+"/download/localhost/"+id, alice, nil, nil)
		mediaError(t, "deleted media", resp, raw, 404, "M_NOT_FOUND")
		if n := contentFiles(t, e.srv); n != 0 {
			t.Fatalf("%d files left after deleting the only media", n)
		}

		status, body, _ = e.call(http.MethodPost, "/_parley/admin/v1/purge_media_cache?before_ts="+fmt.Sprint(time.Now().UnixMilli()), admin, nil)
		if status != 200 || body["deleted"] != float64(0) {
			t.Fatalf("purge: %d %v", status, body)
		}
		status, body, _ = e.call(http.MethodPost, "/_parley/admin/v1/purge_media_cache", admin, nil)
		wantError(t, "purge without before_ts", status, body, 400, "M_MISSING_PARAM")
		status, body, _ = e.call(http.MethodPost, "/_parley/admin/v1/purge_media_cache?before_ts=1", alice, nil)
		wantError(t, "purge by a non-admin", status, body, 403, "M_FORBIDDEN")
	})
}

func TestMediaPreviewURL(t *testing.T) {
	pixel := encodePNG(t, testImage(48, 32))
	site := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/page":
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			fmt.Fprint(w, `<!doctype html><html><head><title>ignored</title>
				<meta property="og:title" content="A Blog Post">
				<meta property="og:description" content="Something worth reading">
				<meta property="og:image" content="/img.png">
				</head><body>…</body></html>`)
		case "/img.png":
			w.Header().Set("Content-Type", "image/png")
			w.Write(pixel)
		case "/redirect":
			http.Redirect(w, r, "/page", http.StatusFound)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(site.Close) // after the parallel subtests
	page := url.QueryEscape(site.URL + "/page")

	t.Run("disabled", func(t *testing.T) {
		onEachEngine(t, nil, func(t *testing.T, e *env) {
			alice := e.register("alice", "password-alice").AccessToken
			status, body, _ := e.call(http.MethodGet, mediaV1+"/preview_url?url="+page, alice, nil)
			wantError(t, "preview while disabled", status, body, 403, "M_FORBIDDEN")
		})
	})
	t.Run("loopback refused", func(t *testing.T) {
		onEachEngine(t, func(c *config.Config) { c.Media.URLPreview.Enabled = true }, func(t *testing.T, e *env) {
			alice := e.register("alice", "password-alice").AccessToken
			// By address, and by a name that resolves to loopback: the
			// check is on the address connected to.
			named := url.QueryEscape(strings.Replace(site.URL, "127.0.0.1", "localhost", 1) + "/page")
			for _, u := range []string{page, named, url.QueryEscape("http://[::1]:1/"), url.QueryEscape("http://169.254.169.254/latest/meta-data")} {
				status, body, _ := e.call(http.MethodGet, mediaV1+"/preview_url?url="+u, alice, nil)
				wantError(t, "preview of "+u, status, body, 403, "M_FORBIDDEN")
			}
			status, body, _ := e.call(http.MethodGet, mediaV1+"/preview_url?url="+url.QueryEscape("file:///etc/passwd"), alice, nil)
			wantError(t, "file URL", status, body, 400, "M_INVALID_PARAM")
			status, body, _ = e.call(http.MethodGet, mediaV1+"/preview_url", alice, nil)
			wantError(t, "no url", status, body, 400, "M_MISSING_PARAM")
		})
	})
	t.Run("private allowed", func(t *testing.T) {
		onEachEngine(t, func(c *config.Config) {
			c.Media.URLPreview.Enabled = true
			c.Media.URLPreview.AllowPrivateAddresses = true
		}, func(t *testing.T, e *env) {
			alice := e.register("alice", "password-alice").AccessToken
			for _, u := range []string{page, url.QueryEscape(site.URL + "/redirect")} {
				status, og, _ := e.call(http.MethodGet, mediaV1+"/preview_url?url="+u, alice, nil)
				if status != 200 || og["og:title"] != "A Blog Post" || og["og:description"] != "Something worth reading" ||
					og["og:image:type"] != "image/png" || og["matrix:image:size"] != float64(len(pixel)) ||
					og["og:image:width"] != float64(48) || og["og:image:height"] != float64(32) {
					t.Fatalf("preview: %d %v", status, og)
				}
				img, _ := og["og:image"].(string)
				resp, raw := e.mediaRequest(http.MethodGet, mediaV1+"/download/"+strings.TrimPrefix(img, "mxc://"), alice, nil, nil)
				if resp.StatusCode != 200 || !bytes.Equal(raw, pixel) {
					t.Fatalf("preview image %s: %d", img, resp.StatusCode)
				}
			}
			status, body, _ := e.call(http.MethodGet, mediaV1+"/preview_url?url="+url.QueryEscape(site.URL+"/missing"), alice, nil)
			wantError(t, "preview of a 404", status, body, 502, "M_UNKNOWN")
		})
	})
}

package media

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"io"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"golang.org/x/net/html"
	"golang.org/x/net/html/charset"

	"github.com/parley-chat/parley/storage"
)

// Errors of URL previews.
var (
	// ErrPreviewDisabled: url_preview.enabled is off (403).
	ErrPreviewDisabled = errors.New("URL previews are disabled on this server")
	// ErrPreviewForbidden: the URL resolves to an address previews may not
	// fetch, or is not an http(s) URL (403).
	ErrPreviewForbidden = errors.New("URL not allowed for previews")
	// ErrPreviewFailed: the page could not be fetched (502).
	ErrPreviewFailed = errors.New("could not fetch the URL")
)

// PreviewConfig configures URL previews.
type PreviewConfig struct {
	Enabled bool
	// AllowPrivateAddresses lets previews connect to non-public addresses.
	AllowPrivateAddresses bool
}

const (
	// previewCacheTTL is how long a fetched preview is reused.
	previewCacheTTL = time.Hour
	// previewTimeout bounds one preview, page and image together.
	previewTimeout = 20 * time.Second
	// maxPreviewHTML is how much of a page is read for its metadata,
	// which lives in <head>.
	maxPreviewHTML = 1 << 20
	// maxPreviewImage bounds the preview image the server stores.
	maxPreviewImage = 10 << 20
	// maxOGValue bounds one OpenGraph value, maxOGKeys their number.
	maxOGValue = 2000
	maxOGKeys  = 50
)

type previewer struct {
	s      *Service
	cfg    PreviewConfig
	client *http.Client
}

func newPreviewer(s *Service, cfg PreviewConfig) *previewer {
	dialer := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	if !cfg.AllowPrivateAddresses {
		// The check runs on the address actually being connected to,
		// after DNS resolution and on every redirect: a hostname that
		// resolves to 127.0.0.1, or re-resolves differently a moment
		// later (DNS rebinding), is caught too.
		dialer.Control = func(_, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return fmt.Errorf("%w: unparseable address %q", ErrPreviewForbidden, address)
			}
			if !PublicAddress(ap.Addr()) {
				return fmt.Errorf("%w: %s is not a public address", ErrPreviewForbidden, ap.Addr())
			}
			return nil
		}
	}
	transport := &http.Transport{
		// No proxy from the environment: it would connect for us, to
		// addresses the dialer never sees.
		Proxy:                 nil,
		DialContext:           dialer.DialContext,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 10 * time.Second,
		MaxIdleConns:          10,
		IdleConnTimeout:       30 * time.Second,
	}
	client := &http.Client{
		Transport: transport,
		Timeout:   previewTimeout,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= 5 {
				return fmt.Errorf("%w: too many redirects", ErrPreviewFailed)
			}
			if req.URL.Scheme != "http" && req.URL.Scheme != "https" {
				return fmt.Errorf("%w: redirect to a %s URL", ErrPreviewForbidden, req.URL.Scheme)
			}
			return nil
		},
	}
	return &previewer{s: s, cfg: cfg, client: client}
}

// blockedPrefixes are non-public ranges that netip's predicates do not
// cover.
var blockedPrefixes = func() []netip.Prefix {
	var out []netip.Prefix
	for _, p := range []string{
		"0.0.0.0/8",         // "this network"
		"100.64.0.0/10",     // carrier-grade NAT, often internal
		"192.0.0.0/24",      // IETF protocol assignments
		"192.0.2.0/24",      // documentation
		"198.18.0.0/15",     // benchmarking
		"198.51.100.0/24",   // documentation
		"203.0.113.0/24",    // documentation
		"240.0.0.0/4",       // reserved, and broadcast
		"64:ff9b::/96",      // NAT64: reaches IPv4 addresses, private ones too
		"64:ff9b:1::/48",    // local-use NAT64
		"100::/64",          // discard
		"2001::/32",         // Teredo
		"2001:db8::/32",     // documentation
		"2002::/16",         // 6to4: embeds IPv4 addresses
		"fec0::/10",         // deprecated site-local
		"ff00::/8",          // multicast
		"::ffff:0:0/96",     // IPv4-mapped (unmapped before checking anyway)
		"::/128", "::1/128", // unspecified, loopback
	} {
		out = append(out, netip.MustParsePrefix(p))
	}
	return out
}()

// PublicAddress reports whether URL previews may connect to ip: a global
// unicast address outside every private, loopback, link-local, shared or
// reserved range.
func PublicAddress(ip netip.Addr) bool {
	ip = ip.Unmap()
	if !ip.IsValid() || !ip.IsGlobalUnicast() || ip.IsPrivate() || ip.IsLoopback() || ip.IsLinkLocalUnicast() ||
		ip.IsMulticast() || ip.IsUnspecified() {
		return false
	}
	for _, p := range blockedPrefixes {
		if p.Contains(ip) {
			return false
		}
	}
	return true
}

// PreviewURL returns the OpenGraph metadata of a web page for a client:
// og:title, og:description and the like, with og:image replaced by an
// mxc:// URI of a copy the server stores.
func (s *Service) PreviewURL(ctx context.Context, rawURL string) (map[string]any, error) {
	p := s.preview
	if !p.cfg.Enabled {
		return nil, ErrPreviewDisabled
	}
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%w: not an http or https URL", ErrInvalidParam)
	}
	if u.User != nil {
		return nil, fmt.Errorf("%w: URLs with credentials are not previewed", ErrPreviewForbidden)
	}
	u.Fragment, u.RawFragment = "", ""
	key := u.String()
	if og, ts, err := s.db.GetURLPreview(ctx, key); err == nil && s.now().Sub(time.UnixMilli(ts)) < previewCacheTTL {
		var out map[string]any
		if json.Unmarshal([]byte(og), &out) == nil {
			return out, nil
		}
	} else if err != nil && !errors.Is(err, storage.ErrNotFound) {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, previewTimeout)
	defer cancel()
	og, err := p.fetch(ctx, u)
	if err != nil {
		return nil, err
	}
	if raw, err := json.Marshal(og); err == nil {
		if err := s.db.PutURLPreview(ctx, key, string(raw), s.nowMS()); err != nil {
			s.log.WithError(err).Warn("media: caching URL preview failed")
		}
	}
	return og, nil
}

func (p *previewer) get(ctx context.Context, u string, accept string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidParam, err)
	}
	req.Header.Set("User-Agent", "Parley URL preview (Matrix homeserver)")
	req.Header.Set("Accept", accept)
	resp, err := p.client.Do(req)
	if err != nil {
		if errors.Is(err, ErrPreviewForbidden) {
			return nil, ErrPreviewForbidden
		}
		return nil, fmt.Errorf("%w: %v", ErrPreviewFailed, err)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("%w: %s answered %s", ErrPreviewFailed, u, resp.Status)
	}
	return resp, nil
}

func (p *previewer) fetch(ctx context.Context, u *url.URL) (map[string]any, error) {
	resp, err := p.get(ctx, u.String(), "text/html,application/xhtml+xml,image/*;q=0.9,*/*;q=0.5")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	ct := resp.Header.Get("Content-Type")
	mt, _, _ := mime.ParseMediaType(ct)
	og := map[string]any{}
	switch {
	case mt == "text/html" || mt == "application/xhtml+xml":
		r, err := charset.NewReader(io.LimitReader(resp.Body, maxPreviewHTML), ct)
		if err != nil {
			return og, nil // an unknown charset: no preview, not an error
		}
		parseOpenGraph(r, og)
		if img, ok := og["og:image"].(string); ok {
			delete(og, "og:image")
			if iu, err := resp.Request.URL.Parse(img); err == nil && (iu.Scheme == "http" || iu.Scheme == "https") {
				p.attachImage(ctx, iu.String(), og)
			}
		}
	case strings.HasPrefix(mt, "image/"):
		// A link straight to an image previews as that image.
		p.storeImage(ctx, resp, og)
	}
	return og, nil
}

// attachImage fetches a page's og:image and stores it as media; a failure
// just leaves the preview without an image.
func (p *previewer) attachImage(ctx context.Context, imageURL string, og map[string]any) {
	resp, err := p.get(ctx, imageURL, "image/*")
	if err != nil {
		p.s.log.WithError(err).Debug("media: preview image not fetched")
		return
	}
	defer resp.Body.Close()
	p.storeImage(ctx, resp, og)
}

// storeImage keeps an image for a preview and describes it in og.
func (p *previewer) storeImage(ctx context.Context, resp *http.Response, og map[string]any) {
	ct := NormalizeContentType(resp.Header.Get("Content-Type"))
	mt, _, _ := mime.ParseMediaType(ct)
	if !strings.HasPrefix(mt, "image/") {
		return
	}
	st, err := p.s.store.Put(ctx, io.LimitReader(resp.Body, maxPreviewImage+1))
	if err != nil {
		p.s.log.WithError(err).Debug("media: preview image not stored")
		return
	}
	if st.Size() > maxPreviewImage {
		_ = st.Discard()
		return
	}
	mediaID := newMediaID()
	now := p.s.nowMS()
	err = p.s.commitReferenced(ctx, st, func() error {
		return p.s.db.InsertMedia(ctx, storage.Media{
			ServerName: p.s.cfg.ServerName, MediaID: mediaID, ContentHash: st.Hash(), ContentType: ct,
			Size: st.Size(), CreatedTS: now, LastAccessTS: now,
		}, 0)
	})
	if err != nil {
		p.s.log.WithError(err).Warn("media: storing preview image failed")
		return
	}
	og["og:image"] = MXC(p.s.cfg.ServerName, mediaID)
	og["og:image:type"] = mt
	og["matrix:image:size"] = st.Size()
	if f, err := p.s.store.Open(ctx, st.Hash()); err == nil {
		if cfg, _, err := image.DecodeConfig(f); err == nil {
			og["og:image:width"], og["og:image:height"] = cfg.Width, cfg.Height
		}
		f.Close()
	}
}

// parseOpenGraph collects a page's og:* meta properties into og, with the
// page's <title> and meta description as fallbacks for og:title and
// og:description.
func parseOpenGraph(r io.Reader, og map[string]any) {
	z := html.NewTokenizer(r)
	var title, description string
	inTitle := false
	for {
		switch z.Next() {
		case html.ErrorToken:
			if _, ok := og["og:title"]; !ok && title != "" {
				og["og:title"] = clip(title)
			}
			if _, ok := og["og:description"]; !ok && description != "" {
				og["og:description"] = clip(description)
			}
			return
		case html.StartTagToken, html.SelfClosingTagToken:
			name, hasAttr := z.TagName()
			switch string(name) {
			case "title":
				inTitle = title == ""
			case "meta":
				if !hasAttr {
					continue
				}
				var prop, nameAttr, content string
				for more := true; more; {
					var k, v []byte
					k, v, more = z.TagAttr()
					switch string(k) {
					case "property":
						prop = strings.ToLower(string(v))
					case "name":
						nameAttr = strings.ToLower(string(v))
					case "content":
						content = string(v)
					}
				}
				// Some pages write og: tags with name= instead of property=.
				if prop == "" && strings.HasPrefix(nameAttr, "og:") {
					prop = nameAttr
				}
				switch {
				case strings.HasPrefix(prop, "og:") && len(og) < maxOGKeys:
					if _, dup := og[prop]; !dup && content != "" {
						og[prop] = clip(content)
					}
				case nameAttr == "description" && description == "":
					description = content
				}
			}
		case html.TextToken:
			if inTitle {
				title += string(z.Text())
			}
		case html.EndTagToken:
			if name, _ := z.TagName(); string(name) == "title" {
				inTitle = false
				title = strings.TrimSpace(title)
			}
		}
	}
}

// clip shortens a value to maxOGValue bytes on a rune boundary.
func clip(s string) string {
	s = strings.TrimSpace(s)
	if len(s) <= maxOGValue {
		return s
	}
	i := maxOGValue
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i]
}

package media

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"image"
	"image/gif"
	"image/jpeg"
	"image/png"
	"io"
	"math"
	"time"

	"golang.org/x/image/draw"
	"golang.org/x/image/webp"

	"github.com/parley-chat/parley/storage"
)

// Errors of thumbnailing.
var (
	// ErrCannotThumbnail: the content is not an image this server can
	// thumbnail (400 M_UNKNOWN, as the spec's example).
	ErrCannotThumbnail = errors.New("cannot generate a thumbnail of this content")
	// ErrImageTooLarge: the image has more pixels than
	// media.max_thumbnail_pixels (413 M_TOO_LARGE).
	ErrImageTooLarge = errors.New("image too large to thumbnail")
)

// ThumbnailRequest is what a client asks of the thumbnail endpoint.
type ThumbnailRequest struct {
	// Width and Height are the smallest size the client wants.
	Width, Height int
	// Method is "crop" or "scale".
	Method string
	// Animated asks for an animated thumbnail where possible.
	Animated bool
}

// thumbSize is one size thumbnails are made in.
type thumbSize struct {
	w, h   int
	method string
}

// thumbnailSizes are the sizes thumbnails are generated in: the spec's
// recommended ones, plus larger crops (avatars shown big) and a large
// scale (high-density screens). A request is served by the smallest size
// of its method that is at least as large in both dimensions, so that a
// thumbnail is never smaller than asked for, and a media has at most one
// stored thumbnail per entry here (clients cannot make the server store a
// thumbnail for every pixel size). Requests larger than every entry get the
// original image.
var thumbnailSizes = []thumbSize{
	{32, 32, "crop"}, {96, 96, "crop"}, {320, 320, "crop"}, {640, 640, "crop"},
	{320, 240, "scale"}, {640, 480, "scale"}, {800, 600, "scale"}, {1600, 1200, "scale"},
}

// originalSize stands for "the whole image, not scaled": the answer when a
// request is as large as the image, or larger than every thumbnail size.
var originalSize = thumbSize{0, 0, "original"}

// chooseSize picks the thumbnail size that serves req.
func chooseSize(req ThumbnailRequest) thumbSize {
	for _, s := range thumbnailSizes {
		if s.method == req.Method && s.w >= req.Width && s.h >= req.Height {
			return s
		}
	}
	return originalSize
}

// fitsIn reports whether a w×h image needs no downscaling for size: the
// spec says to return the original rather than upscale.
func fitsIn(w, h int, size thumbSize) bool {
	return size == originalSize || w <= size.w && h <= size.h
}

// probe is what an image's header says about it.
type probe struct {
	format   string // jpeg, png, gif or webp
	w, h     int    // as stored
	animated bool   // APNG, animated WebP; any GIF may be animated
	// orientation is the JPEG's EXIF orientation, 1 when none.
	orientation int
}

// displayed is the image's size as shown, after its EXIF orientation.
func (p probe) displayed() (int, int) {
	if swapsAxes(p.orientation) {
		return p.h, p.w
	}
	return p.w, p.h
}

func (p probe) contentType() string { return "image/" + p.format }

// staticOriginal reports whether the original can be served as a
// non-animated thumbnail as it is.
func (p probe) staticOriginal() bool {
	switch p.format {
	case "jpeg":
		return true
	case "png", "webp":
		return !p.animated
	}
	return false
}

// probeImage reads an image's header (never its pixels).
func probeImage(r io.ReadSeeker) (probe, error) {
	cfg, format, err := image.DecodeConfig(r)
	if err != nil {
		return probe{}, fmt.Errorf("%w: not a supported image (%v)", ErrCannotThumbnail, err)
	}
	p := probe{format: format, w: cfg.Width, h: cfg.Height, orientation: 1}
	if p.w <= 0 || p.h <= 0 {
		return probe{}, fmt.Errorf("%w: empty image", ErrCannotThumbnail)
	}
	if _, err := r.Seek(0, io.SeekStart); err != nil {
		return probe{}, err
	}
	switch format {
	case "jpeg":
		p.orientation = jpegOrientation(r)
	case "gif":
		p.animated = true
	case "png":
		p.animated = isAPNG(r)
	case "webp":
		p.animated = isAnimatedWebP(r)
	default:
		return probe{}, fmt.Errorf("%w: %s images are not supported", ErrCannotThumbnail, format)
	}
	_, err = r.Seek(0, io.SeekStart)
	return p, err
}

// isAPNG looks for the acTL chunk that animated PNGs have before their
// image data.
func isAPNG(r io.Reader) bool {
	var sig [8]byte
	if _, err := io.ReadFull(r, sig[:]); err != nil {
		return false
	}
	for i := 0; i < 64; i++ { // acTL comes early; do not walk huge files
		var hdr [8]byte
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return false
		}
		length := binary.BigEndian.Uint32(hdr[:4])
		switch string(hdr[4:8]) {
		case "acTL":
			return true
		case "IDAT", "IEND":
			return false
		}
		if _, err := io.CopyN(io.Discard, r, int64(length)+4); err != nil { // data and CRC
			return false
		}
	}
	return false
}

// isAnimatedWebP reads the VP8X header's animation flag.
func isAnimatedWebP(r io.Reader) bool {
	var hdr [21]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return false
	}
	return string(hdr[12:16]) == "VP8X" && hdr[20]&0x02 != 0
}

// Thumbnail returns a thumbnail of a media: generated once per size and
// method, then stored and served from the store.
func (s *Service) Thumbnail(ctx context.Context, serverName, mediaID string, req ThumbnailRequest, opts FetchOptions) (*File, error) {
	if req.Width < 1 || req.Height < 1 {
		return nil, fmt.Errorf("%w: width and height must be positive", ErrInvalidParam)
	}
	if req.Method != "crop" && req.Method != "scale" {
		return nil, fmt.Errorf("%w: method must be crop or scale", ErrInvalidParam)
	}
	m, err := s.resolve(ctx, serverName, mediaID, opts)
	if err != nil {
		return nil, err
	}
	size := chooseSize(req)
	if req.Animated {
		// Thumbnails are never animated, but an animated image that
		// needs no scaling can be served as it is.
		if f, ok := s.animatedOriginal(ctx, m, size); ok {
			return f, nil
		}
	}
	t, err := s.db.GetMediaThumbnail(ctx, m.ServerName, m.MediaID, size.w, size.h, size.method)
	if errors.Is(err, storage.ErrNotFound) {
		key := fmt.Sprintf("thumb:%s/%s/%d/%d/%s", m.ServerName, m.MediaID, size.w, size.h, size.method)
		var v any
		v, err = s.flights.do(ctx, key, func(ctx context.Context) (any, error) { return s.generateThumbnail(ctx, m, size) })
		if err == nil {
			t = v.(*storage.MediaThumbnail)
		}
	}
	if err != nil {
		return nil, err
	}
	body, err := s.store.Open(ctx, t.ContentHash)
	if err != nil {
		return nil, fmt.Errorf("thumbnail of %s/%s: content %s: %w", serverName, mediaID, t.ContentHash, err)
	}
	s.touch(ctx, m)
	return &File{ContentType: t.ContentType, Size: t.Size, Hash: t.ContentHash, Created: time.UnixMilli(t.CreatedTS), Body: body}, nil
}

// animatedOriginal opens the original when it is an animated image that
// fits size.
func (s *Service) animatedOriginal(ctx context.Context, m *storage.Media, size thumbSize) (*File, bool) {
	body, err := s.store.Open(ctx, m.ContentHash)
	if err != nil {
		return nil, false
	}
	p, err := probeImage(body)
	if err != nil || !p.animated || !fitsIn(p.w, p.h, size) { // animated formats carry no EXIF orientation
		body.Close()
		return nil, false
	}
	s.touch(ctx, m)
	return &File{ContentType: p.contentType(), Size: m.Size, Hash: m.ContentHash, Created: time.UnixMilli(m.CreatedTS), Body: body}, true
}

func (s *Service) generateThumbnail(ctx context.Context, m *storage.Media, size thumbSize) (*storage.MediaThumbnail, error) {
	// Another process may have made it meanwhile.
	if t, err := s.db.GetMediaThumbnail(ctx, m.ServerName, m.MediaID, size.w, size.h, size.method); err == nil {
		return t, nil
	}
	src, err := s.store.Open(ctx, m.ContentHash)
	if err != nil {
		return nil, fmt.Errorf("thumbnail of %s/%s: %w", m.ServerName, m.MediaID, err)
	}
	defer src.Close()
	p, err := probeImage(src)
	if err != nil {
		return nil, err
	}
	t := &storage.MediaThumbnail{
		ServerName: m.ServerName, MediaID: m.MediaID, Width: size.w, Height: size.h, Method: size.method,
		CreatedTS: s.nowMS(),
	}
	// The original is shown turned by its EXIF orientation (browsers and
	// clients apply it), so sizes compare against the displayed size.
	dw, dh := p.displayed()
	fits := fitsIn(dw, dh, size)
	if fits && p.staticOriginal() {
		// The original is the answer: record it as this size's thumbnail,
		// sharing its content, so that later requests skip the probe.
		t.ContentHash, t.ContentType, t.Size = m.ContentHash, p.contentType(), m.Size
		unlock := s.lockHash(t.ContentHash)
		defer unlock()
		return s.recordThumbnail(ctx, t)
	}
	// Checked on the header, before decoding: a file of a few bytes may
	// declare a 100000×100000 image.
	if int64(p.w)*int64(p.h) > s.cfg.MaxThumbnailPixels {
		return nil, fmt.Errorf("%w: %d×%d pixels is over the limit of %d", ErrImageTooLarge, p.w, p.h, s.cfg.MaxThumbnailPixels)
	}
	select {
	case s.thumbSlots <- struct{}{}:
		defer func() { <-s.thumbSlots }()
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	img, err := decodeImage(p, src)
	if err != nil {
		return nil, err
	}
	if !fits {
		// Scale the stored image into the box turned the same way, then
		// turn the (small) result.
		box := size
		if swapsAxes(p.orientation) {
			box.w, box.h = size.h, size.w
		}
		img = resize(img, box)
	}
	img = orient(img, p.orientation)
	var buf bytes.Buffer
	if p.format == "jpeg" || p.format == "webp" && opaque(img) {
		t.ContentType = "image/jpeg"
		err = jpeg.Encode(&buf, img, &jpeg.Options{Quality: 85})
	} else {
		t.ContentType = "image/png"
		err = (&png.Encoder{CompressionLevel: png.BestSpeed}).Encode(&buf, img)
	}
	if err != nil {
		return nil, fmt.Errorf("encoding thumbnail: %w", err)
	}
	st, err := s.store.Put(ctx, &buf)
	if err != nil {
		return nil, err
	}
	t.ContentHash, t.Size = st.Hash(), st.Size()
	var out *storage.MediaThumbnail
	err = s.commitReferenced(ctx, st, func() error {
		var err error
		out, err = s.recordThumbnail(ctx, t)
		return err
	})
	return out, err
}

// recordThumbnail stores t, or returns the one another process stored
// first. The caller holds t.ContentHash's lock.
func (s *Service) recordThumbnail(ctx context.Context, t *storage.MediaThumbnail) (*storage.MediaThumbnail, error) {
	err := s.db.InsertMediaThumbnail(ctx, *t)
	if errors.Is(err, storage.ErrMediaExists) {
		return s.db.GetMediaThumbnail(ctx, t.ServerName, t.MediaID, t.Width, t.Height, t.Method)
	}
	if err != nil {
		return nil, err
	}
	return t, nil
}

// decodeImage decodes the first frame of a probed image with the decoder
// of its format.
func decodeImage(p probe, r io.Reader) (image.Image, error) {
	var (
		img image.Image
		err error
	)
	switch p.format {
	case "jpeg":
		img, err = jpeg.Decode(r)
	case "png":
		img, err = png.Decode(r)
	case "gif":
		img, err = gif.Decode(r)
	case "webp":
		img, err = webp.Decode(r)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: decoding %s: %v", ErrCannotThumbnail, p.format, err)
	}
	// A GIF frame may cover only part of the logical screen.
	if screen := image.Rect(0, 0, p.w, p.h); img.Bounds() != screen {
		canvas := image.NewRGBA(screen)
		draw.Draw(canvas, img.Bounds(), img, img.Bounds().Min, draw.Src)
		img = canvas
	}
	return img, nil
}

// resize scales img down for size (which it does not fit in) without ever
// upscaling. "scale" keeps the aspect ratio and fits the box; "crop" fills
// the box, cutting off what overflows around the centre.
func resize(img image.Image, size thumbSize) image.Image {
	b := img.Bounds()
	iw, ih := float64(b.Dx()), float64(b.Dy())
	tw, th := float64(size.w), float64(size.h)
	if size.method == "scale" {
		f := math.Min(tw/iw, th/ih)
		dst := image.NewRGBA(image.Rect(0, 0, max(1, int(math.Round(iw*f))), max(1, int(math.Round(ih*f)))))
		draw.CatmullRom.Scale(dst, dst.Bounds(), img, b, draw.Src, nil)
		return dst
	}
	f := math.Max(tw/iw, th/ih)
	if f >= 1 {
		// Smaller than the box in one dimension: cut the other to the
		// box, scaling nothing.
		w, h := min(b.Dx(), size.w), min(b.Dy(), size.h)
		src := centred(b, w, h)
		dst := image.NewRGBA(image.Rect(0, 0, w, h))
		draw.Draw(dst, dst.Bounds(), img, src.Min, draw.Src)
		return dst
	}
	src := centred(b, min(b.Dx(), int(math.Round(tw/f))), min(b.Dy(), int(math.Round(th/f))))
	dst := image.NewRGBA(image.Rect(0, 0, size.w, size.h))
	draw.CatmullRom.Scale(dst, dst.Bounds(), img, src, draw.Src, nil)
	return dst
}

// centred is the w×h rectangle in the middle of b.
func centred(b image.Rectangle, w, h int) image.Rectangle {
	x := b.Min.X + (b.Dx()-w)/2
	y := b.Min.Y + (b.Dy()-h)/2
	return image.Rect(x, y, x+w, y+h)
}

// opaque reports whether img has no transparent pixels (so JPEG can
// encode it).
func opaque(img image.Image) bool {
	if o, ok := img.(interface{ Opaque() bool }); ok {
		return o.Opaque()
	}
	return false
}

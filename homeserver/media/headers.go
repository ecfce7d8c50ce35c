package media

import (
	"mime"
	"strings"
	"unicode"
	"unicode/utf8"
)

// inlineSafeTypes are the content types the spec lists as safe to serve
// with Content-Disposition: inline ("Serving inline content"): a browser
// renders them as what they claim to be, never as a page that runs
// scripts. Everything else (HTML, SVG, XML, JavaScript, PDF, unknown
// types) is served as an attachment.
var inlineSafeTypes = map[string]bool{
	"text/css": true, "text/plain": true, "text/csv": true,
	"application/json": true, "application/ld+json": true,
	"image/jpeg": true, "image/gif": true, "image/png": true, "image/apng": true, "image/webp": true, "image/avif": true,
	"video/mp4": true, "video/webm": true, "video/ogg": true, "video/quicktime": true,
	"audio/mp4": true, "audio/webm": true, "audio/aac": true, "audio/mpeg": true, "audio/ogg": true,
	"audio/wave": true, "audio/wav": true, "audio/x-wav": true, "audio/x-pn-wav": true, "audio/flac": true, "audio/x-flac": true,
}

// InlineSafe reports whether content of this type may be served inline.
func InlineSafe(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	return err == nil && inlineSafeTypes[strings.ToLower(mt)]
}

// Disposition is "inline" for inline-safe content types and "attachment"
// for the rest.
func Disposition(contentType string) string {
	if InlineSafe(contentType) {
		return "inline"
	}
	return "attachment"
}

// maxHeaderFilename bounds the file name in Content-Disposition (in
// runes); longer names are cut, keeping their extension.
const maxHeaderFilename = 200

// ContentDisposition builds a Content-Disposition header value (RFC 6266)
// for disposition ("inline" or "attachment") and filename, which may be
// empty. The name is sanitised (no control characters or path separators,
// which would let a client write elsewhere than its download folder), and
// any name that is not plain ASCII is also given as filename* (RFC 5987),
// UTF-8 and percent-encoded, with an ASCII approximation in filename for
// old clients.
func ContentDisposition(disposition, filename string) string {
	name := SanitizeFilename(filename)
	if name == "" {
		return disposition
	}
	var ascii strings.Builder
	plain := true
	for _, r := range name {
		switch {
		case r == '"' || r == '\\' || r == '%' || r > unicode.MaxASCII:
			// Quoting rules for " and \ differ between clients, and some
			// percent-decode filename: say these only in filename*.
			ascii.WriteByte('_')
			plain = false
		default:
			ascii.WriteRune(r)
		}
	}
	v := disposition + `; filename="` + ascii.String() + `"`
	if !plain {
		v += "; filename*=utf-8''" + encodeRFC5987(name)
	}
	return v
}

// SanitizeFilename removes from a file name what must not reach a
// Content-Disposition header or a client's file system: control and
// invisible formatting characters, path separators and leading dots.
func SanitizeFilename(name string) string {
	if !utf8.ValidString(name) {
		name = strings.ToValidUTF8(name, "_")
	}
	var b strings.Builder
	for _, r := range name {
		switch {
		case r == '/' || r == '\\':
			b.WriteByte('_')
		case unicode.IsControl(r), unicode.Is(unicode.Cf, r), r == utf8.RuneError:
			// Drop: CR/LF would split the header; bidi overrides disguise
			// extensions ("gpj.exe").
		default:
			b.WriteRune(r)
		}
	}
	s := strings.TrimSpace(b.String())
	s = strings.TrimLeft(s, ".")
	if r := []rune(s); len(r) > maxHeaderFilename {
		ext := []rune{}
		if i := strings.LastIndexByte(s, '.'); i > 0 && len(s)-i <= 16 {
			ext = []rune(s[i:])
		}
		s = string(r[:maxHeaderFilename-len(ext)]) + string(ext)
	}
	return s
}

// encodeRFC5987 percent-encodes s as the value of an RFC 5987 ext-value,
// keeping only attr-char unescaped.
func encodeRFC5987(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$&+-.^_`|~", c) >= 0 {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&15])
	}
	return b.String()
}

// ContentSecurityPolicy is sent with all media: even content a browser
// renders as a page cannot run scripts, load plugins (except the PDF
// viewer) or reach anything else. It is the spec's recommended policy plus
// media-src 'self', so that audio and video opened directly still play.
const ContentSecurityPolicy = "sandbox; default-src 'none'; script-src 'none'; plugin-types application/pdf; " +
	"style-src 'unsafe-inline'; media-src 'self'; object-src 'self';"

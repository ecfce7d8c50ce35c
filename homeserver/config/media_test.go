package config

import (
	"strings"
	"testing"
)

func TestMediaConfig(t *testing.T) {
	c, err := Load(writeFile(t, "data_dir: /srv/parley\nmedia:\n  max_upload_bytes: 1048576\n  url_preview:\n    enabled: yes\n"),
		[]string{"PARLEY_MEDIA_MAX_BYTES_PER_USER=5000000", "PARLEY_MEDIA_URL_PREVIEW_ALLOW_PRIVATE_ADDRESSES=true",
			"PARLEY_MEDIA_ALLOW_UNAUTHENTICATED=true"})
	if err != nil {
		t.Fatal(err)
	}
	m := c.Media
	if m.Path != "/srv/parley/media" || m.MaxUploadBytes != 1<<20 || m.MaxBytesPerUser != 5000000 || !m.AllowUnauthenticated ||
		!m.URLPreview.Enabled || !m.URLPreview.AllowPrivateAddresses || m.MaxPendingUploads != 10 || m.MaxThumbnailPixels != 32_000_000 {
		t.Fatalf("media config %+v", m)
	}
	d := Default()
	if err := d.Finish(); err != nil {
		t.Fatal(err)
	}
	// Off by default: previews fetch what users name, and the deprecated
	// unauthenticated endpoints are frozen as the spec asks since v1.12.
	if d.Media.URLPreview.Enabled || d.Media.URLPreview.AllowPrivateAddresses || d.Media.AllowUnauthenticated ||
		d.Media.MaxUploadBytes != 50<<20 || d.Media.MaxBytesPerUser != 0 {
		t.Fatalf("media defaults %+v", d.Media)
	}
	for body, key := range map[string]string{
		"media:\n  max_upload_bytes: 10\n":       "media.max_upload_bytes",
		"media:\n  max_upload_bytes: big\n":      "media.max_upload_bytes",
		"media:\n  max_bytes_per_user: -1\n":     "media.max_bytes_per_user",
		"media:\n  max_pending_uploads: 0\n":     "media.max_pending_uploads",
		"media:\n  max_thumbnail_pixels: 0\n":    "media.max_thumbnail_pixels",
		"media:\n  url_preview:\n    on: true\n": "media.url_preview.on",
	} {
		_, err := Load(writeFile(t, body), nil)
		if err == nil || !strings.Contains(err.Error(), "config: "+key+":") {
			t.Errorf("%q: %v, want an error naming %s", body, err, key)
		}
	}
}

package config

// Media configures the media repository (uploads, downloads, thumbnails
// and URL previews).
type Media struct {
	// Path is the directory of the media files. Empty means
	// <data_dir>/media.
	Path string `yaml:"path"`
	// MaxUploadBytes bounds one upload; larger ones get 413 M_TOO_LARGE.
	// It is the request body limit of the upload endpoints, which are
	// exempt from max_request_body_bytes.
	MaxUploadBytes int64 `yaml:"max_upload_bytes"`
	// MaxBytesPerUser bounds what one user may store in total; 0 means no
	// quota. Uploads past it get 403 M_FORBIDDEN.
	MaxBytesPerUser int64 `yaml:"max_bytes_per_user"`
	// MaxPendingUploads bounds the media IDs a user may hold reserved
	// (POST /_matrix/media/v1/create) without uploading to them.
	MaxPendingUploads int `yaml:"max_pending_uploads"`
	// AllowUnauthenticated serves the deprecated unauthenticated download
	// and thumbnail endpoints under /_matrix/media/v3. Off, they answer
	// 404 M_NOT_FOUND: the "freeze" the spec asks of servers since v1.12.
	AllowUnauthenticated bool `yaml:"allow_unauthenticated"`
	// MaxThumbnailPixels is the largest image (width × height) the server
	// decodes to make a thumbnail; larger ones get 413 M_TOO_LARGE. It is
	// what stops a small file that declares a huge image from exhausting
	// memory.
	MaxThumbnailPixels int64      `yaml:"max_thumbnail_pixels"`
	URLPreview         URLPreview `yaml:"url_preview"`
}

// URLPreview configures GET /_matrix/client/v1/media/preview_url, which
// makes the server fetch URLs that users name.
type URLPreview struct {
	// Enabled turns the endpoint on.
	Enabled bool `yaml:"enabled"`
	// AllowPrivateAddresses lets previews fetch loopback, private,
	// link-local and other non-public addresses. Off, such addresses are
	// refused when connecting (after DNS resolution), so that users cannot
	// make the server probe its own network.
	AllowPrivateAddresses bool `yaml:"allow_private_addresses"`
}

func defaultMedia() Media {
	return Media{
		MaxUploadBytes:     50 << 20,
		MaxPendingUploads:  10,
		MaxThumbnailPixels: 32_000_000,
	}
}

func (m *Media) validate() error {
	if m.MaxUploadBytes < 1024 {
		return keyError("media.max_upload_bytes", "must be at least 1024")
	}
	if m.MaxBytesPerUser < 0 {
		return keyError("media.max_bytes_per_user", "must not be negative (0 means no quota)")
	}
	if m.MaxPendingUploads < 1 {
		return keyError("media.max_pending_uploads", "must be at least 1")
	}
	if m.MaxThumbnailPixels < 1 {
		return keyError("media.max_thumbnail_pixels", "must be positive")
	}
	return nil
}

package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// Errors of the media tables.
var (
	// ErrMediaExists: the media ID already has content (or a thumbnail
	// of that size already exists).
	ErrMediaExists = errors.New("storage: media already uploaded")
	// ErrMediaForbidden: a reserved media ID belongs to another user.
	ErrMediaForbidden = errors.New("storage: media reserved by another user")
	// ErrMediaQuota: the upload would take the user over their quota.
	ErrMediaQuota = errors.New("storage: media quota exceeded")
	// ErrMediaTooManyPending: the user has too many unused reservations.
	ErrMediaTooManyPending = errors.New("storage: too many pending media uploads")
)

// Media is the metadata of one media ID.
type Media struct {
	ServerName string
	MediaID    string
	// ContentHash is the hex SHA-256 of the content, the key in the file
	// store; "" while a reservation waits for its upload.
	ContentHash string
	ContentType string
	Filename    string
	Size        int64
	// Uploader is the local user who uploaded (or reserved) it; "" for
	// remote media and media the server stored itself.
	Uploader  string
	CreatedTS int64
	// ExpiresTS is when an unused reservation lapses; 0 once uploaded.
	ExpiresTS    int64
	Quarantined  bool
	Remote       bool
	LastAccessTS int64
}

// Pending reports whether m is a reservation still waiting for content.
func (m *Media) Pending() bool { return m.ContentHash == "" }

// MediaThumbnail is one stored thumbnail of a media.
type MediaThumbnail struct {
	ServerName  string
	MediaID     string
	Width       int
	Height      int
	Method      string
	ContentHash string
	ContentType string
	Size        int64
	CreatedTS   int64
}

const mediaColumns = `server_name, media_id, content_hash, content_type, filename, size_bytes, uploader,
	created_ts, expires_ts, quarantined, remote, last_access_ts`

func scanMedia(row interface{ Scan(...any) error }) (*Media, error) {
	m := &Media{}
	var hash sql.NullString
	var expires sql.NullInt64
	err := row.Scan(&m.ServerName, &m.MediaID, &hash, &m.ContentType, &m.Filename, &m.Size, &m.Uploader,
		&m.CreatedTS, &expires, &m.Quarantined, &m.Remote, &m.LastAccessTS)
	if err != nil {
		return nil, err
	}
	m.ContentHash, m.ExpiresTS = hash.String, expires.Int64
	return m, nil
}

func insertMedia(ctx context.Context, q querier, m Media) error {
	res, err := q.ExecContext(ctx, `INSERT INTO media (`+mediaColumns+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
		ON CONFLICT (server_name, media_id) DO NOTHING`,
		m.ServerName, m.MediaID, nullString(m.ContentHash), m.ContentType, m.Filename, m.Size, m.Uploader,
		m.CreatedTS, sql.NullInt64{Int64: m.ExpiresTS, Valid: m.ExpiresTS != 0}, m.Quarantined, m.Remote, m.LastAccessTS)
	if err != nil {
		return fmt.Errorf("storage: insert media: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrMediaExists
	}
	return nil
}

// checkMediaQuota fails with ErrMediaQuota when adding size bytes to what
// uploader already stores would pass quota (0 means no quota).
func checkMediaQuota(ctx context.Context, q querier, uploader string, size, quota int64) error {
	if quota <= 0 {
		return nil
	}
	used, err := mediaBytesUsed(ctx, q, uploader)
	if err != nil {
		return err
	}
	if used+size > quota {
		return ErrMediaQuota
	}
	return nil
}

// InsertMedia stores the metadata of new content (an upload, or a copy of
// remote media). With quota > 0 the uploader's stored bytes, this upload
// included, must stay within it (ErrMediaQuota). A taken media ID gives
// ErrMediaExists.
func (db *DB) InsertMedia(ctx context.Context, m Media, quota int64) error {
	if quota <= 0 {
		return insertMedia(ctx, db, m)
	}
	return db.WithTx(ctx, func(tx *sql.Tx) error {
		if err := checkMediaQuota(ctx, tx, m.Uploader, m.Size, quota); err != nil {
			return err
		}
		return insertMedia(ctx, tx, m)
	})
}

// ReserveMedia stores a reservation (m.ContentHash empty, m.ExpiresTS set)
// for an asynchronous upload. Lapsed reservations are dropped first; then a
// user who already has maxPending live ones gets ErrMediaTooManyPending.
func (db *DB) ReserveMedia(ctx context.Context, m Media, now int64, maxPending int) error {
	return db.WithTx(ctx, func(tx *sql.Tx) error {
		if _, err := deleteExpiredReservations(ctx, tx, now); err != nil {
			return err
		}
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM media
			WHERE uploader = $1 AND content_hash IS NULL`, m.Uploader).Scan(&n); err != nil {
			return fmt.Errorf("storage: count pending media: %w", err)
		}
		if maxPending > 0 && n >= maxPending {
			return ErrMediaTooManyPending
		}
		return insertMedia(ctx, tx, m)
	})
}

// CompleteReservedMedia attaches uploaded content to a reservation. It
// fails with ErrNotFound when there is no live reservation (never made, or
// lapsed), ErrMediaForbidden when another user made it, ErrMediaExists when
// it already has content, and ErrMediaQuota as InsertMedia.
func (db *DB) CompleteReservedMedia(ctx context.Context, m Media, now, quota int64) error {
	return db.WithTx(ctx, func(tx *sql.Tx) error {
		if err := checkMediaQuota(ctx, tx, m.Uploader, m.Size, quota); err != nil {
			return err
		}
		// The conditions make the update its own check: of two uploads
		// racing for one reservation exactly one matches.
		res, err := tx.ExecContext(ctx, `UPDATE media SET content_hash = $4, content_type = $5, filename = $6,
			size_bytes = $7, expires_ts = NULL, created_ts = $8, last_access_ts = $8
			WHERE server_name = $1 AND media_id = $2 AND uploader = $3 AND content_hash IS NULL AND expires_ts > $8`,
			m.ServerName, m.MediaID, m.Uploader, m.ContentHash, m.ContentType, m.Filename, m.Size, now)
		if err != nil {
			return fmt.Errorf("storage: complete media: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 1 {
			return nil
		}
		cur, err := scanMedia(tx.QueryRowContext(ctx, `SELECT `+mediaColumns+` FROM media
			WHERE server_name = $1 AND media_id = $2`, m.ServerName, m.MediaID))
		switch {
		case err != nil:
			return notFound(err, "media")
		case cur.Uploader != m.Uploader:
			return ErrMediaForbidden
		case !cur.Pending():
			return ErrMediaExists
		default: // lapsed
			return fmt.Errorf("%w: media reservation expired", ErrNotFound)
		}
	})
}

// GetMedia loads a media's metadata, or returns ErrNotFound.
func (db *DB) GetMedia(ctx context.Context, serverName, mediaID string) (*Media, error) {
	m, err := scanMedia(db.QueryRowContext(ctx, `SELECT `+mediaColumns+` FROM media
		WHERE server_name = $1 AND media_id = $2`, serverName, mediaID))
	if err != nil {
		return nil, notFound(err, "media")
	}
	return m, nil
}

// TouchMedia records an access to a media, unless one was recorded after
// notBefore: downloads are frequent, and the purge only needs coarse ages.
func (db *DB) TouchMedia(ctx context.Context, serverName, mediaID string, now, notBefore int64) error {
	_, err := db.ExecContext(ctx, `UPDATE media SET last_access_ts = $3
		WHERE server_name = $1 AND media_id = $2 AND last_access_ts < $4`, serverName, mediaID, now, notBefore)
	if err != nil {
		return fmt.Errorf("storage: touch media: %w", err)
	}
	return nil
}

func mediaBytesUsed(ctx context.Context, q querier, uploader string) (int64, error) {
	var used int64
	err := q.QueryRowContext(ctx, `SELECT COALESCE(SUM(size_bytes), 0) FROM media
		WHERE uploader = $1 AND remote = FALSE`, uploader).Scan(&used)
	if err != nil {
		return 0, fmt.Errorf("storage: media bytes used: %w", err)
	}
	return used, nil
}

// MediaBytesUsed is the total size of the media uploader has uploaded.
func (db *DB) MediaBytesUsed(ctx context.Context, uploader string) (int64, error) {
	return mediaBytesUsed(ctx, db, uploader)
}

// SetMediaQuarantined quarantines (or releases) a media; ErrNotFound when
// it does not exist.
func (db *DB) SetMediaQuarantined(ctx context.Context, serverName, mediaID string, quarantined bool) error {
	res, err := db.ExecContext(ctx, `UPDATE media SET quarantined = $3 WHERE server_name = $1 AND media_id = $2`,
		serverName, mediaID, quarantined)
	if err != nil {
		return fmt.Errorf("storage: quarantine media: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("%w: media", ErrNotFound)
	}
	return nil
}

// DeleteMedia deletes a media and its thumbnails and returns the content
// hashes they used, which the caller removes from the file store once no
// other row references them (ContentReferenced). ErrNotFound when the
// media does not exist.
func (db *DB) DeleteMedia(ctx context.Context, serverName, mediaID string) ([]string, error) {
	var hashes []string
	err := db.WithTx(ctx, func(tx *sql.Tx) error {
		m, err := scanMedia(tx.QueryRowContext(ctx, `SELECT `+mediaColumns+` FROM media
			WHERE server_name = $1 AND media_id = $2`, serverName, mediaID))
		if err != nil {
			return notFound(err, "media")
		}
		seen := map[string]bool{}
		if m.ContentHash != "" {
			hashes, seen[m.ContentHash] = append(hashes, m.ContentHash), true
		}
		rows, err := tx.QueryContext(ctx, `SELECT content_hash FROM media_thumbnails
			WHERE server_name = $1 AND media_id = $2`, serverName, mediaID)
		if err != nil {
			return fmt.Errorf("storage: media thumbnails: %w", err)
		}
		for rows.Next() {
			var h string
			if err := rows.Scan(&h); err != nil {
				rows.Close()
				return err
			}
			if !seen[h] {
				hashes, seen[h] = append(hashes, h), true
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM media_thumbnails WHERE server_name = $1 AND media_id = $2`,
			serverName, mediaID); err != nil {
			return fmt.Errorf("storage: delete media thumbnails: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM media WHERE server_name = $1 AND media_id = $2`,
			serverName, mediaID); err != nil {
			return fmt.Errorf("storage: delete media: %w", err)
		}
		return nil
	})
	return hashes, err
}

// ContentReferenced reports whether any media or thumbnail still uses the
// content with this hash.
func (db *DB) ContentReferenced(ctx context.Context, hash string) (bool, error) {
	var n int
	err := db.QueryRowContext(ctx, `SELECT
		(SELECT COUNT(*) FROM media WHERE content_hash = $1) +
		(SELECT COUNT(*) FROM media_thumbnails WHERE content_hash = $1)`, hash).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("storage: media references: %w", err)
	}
	return n > 0, nil
}

// RemoteMediaAccessedBefore lists up to limit cached remote media last
// accessed before ts, oldest first.
func (db *DB) RemoteMediaAccessedBefore(ctx context.Context, ts int64, limit int) ([]Media, error) {
	rows, err := db.QueryContext(ctx, `SELECT `+mediaColumns+` FROM media
		WHERE remote = TRUE AND last_access_ts < $1 ORDER BY last_access_ts LIMIT $2`, ts, limit)
	if err != nil {
		return nil, fmt.Errorf("storage: remote media: %w", err)
	}
	defer rows.Close()
	var out []Media
	for rows.Next() {
		m, err := scanMedia(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, *m)
	}
	return out, rows.Err()
}

func deleteExpiredReservations(ctx context.Context, q querier, now int64) (int64, error) {
	res, err := q.ExecContext(ctx, `DELETE FROM media WHERE content_hash IS NULL AND expires_ts <= $1`, now)
	if err != nil {
		return 0, fmt.Errorf("storage: delete lapsed media reservations: %w", err)
	}
	n, _ := res.RowsAffected()
	return n, nil
}

// DeleteExpiredMediaReservations drops reservations that lapsed by now and
// returns how many.
func (db *DB) DeleteExpiredMediaReservations(ctx context.Context, now int64) (int64, error) {
	return deleteExpiredReservations(ctx, db, now)
}

// GetMediaThumbnail loads a stored thumbnail, or returns ErrNotFound.
func (db *DB) GetMediaThumbnail(ctx context.Context, serverName, mediaID string, width, height int, method string) (*MediaThumbnail, error) {
	t := &MediaThumbnail{}
	err := db.QueryRowContext(ctx, `SELECT server_name, media_id, width, height, method, content_hash, content_type,
		size_bytes, created_ts FROM media_thumbnails
		WHERE server_name = $1 AND media_id = $2 AND width = $3 AND height = $4 AND method = $5`,
		serverName, mediaID, width, height, method).
		Scan(&t.ServerName, &t.MediaID, &t.Width, &t.Height, &t.Method, &t.ContentHash, &t.ContentType, &t.Size, &t.CreatedTS)
	if err != nil {
		return nil, notFound(err, "media thumbnail")
	}
	return t, nil
}

// InsertMediaThumbnail stores a thumbnail's metadata; ErrMediaExists when
// one of that size and method is already stored (the caller then serves
// that one).
func (db *DB) InsertMediaThumbnail(ctx context.Context, t MediaThumbnail) error {
	res, err := db.ExecContext(ctx, `INSERT INTO media_thumbnails (server_name, media_id, width, height, method,
		content_hash, content_type, size_bytes, created_ts) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
		ON CONFLICT (server_name, media_id, width, height, method) DO NOTHING`,
		t.ServerName, t.MediaID, t.Width, t.Height, t.Method, t.ContentHash, t.ContentType, t.Size, t.CreatedTS)
	if err != nil {
		return fmt.Errorf("storage: insert media thumbnail: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrMediaExists
	}
	return nil
}

// GetURLPreview returns a cached URL preview (JSON) and when it was
// fetched, or ErrNotFound.
func (db *DB) GetURLPreview(ctx context.Context, url string) (og string, fetchedTS int64, err error) {
	err = db.QueryRowContext(ctx, `SELECT og, fetched_ts FROM media_url_previews WHERE url = $1`, url).Scan(&og, &fetchedTS)
	if err != nil {
		return "", 0, notFound(err, "URL preview")
	}
	return og, fetchedTS, nil
}

// PutURLPreview caches a URL preview, replacing an older one.
func (db *DB) PutURLPreview(ctx context.Context, url, og string, fetchedTS int64) error {
	_, err := db.ExecContext(ctx, `INSERT INTO media_url_previews (url, fetched_ts, og) VALUES ($1, $2, $3)
		ON CONFLICT (url) DO UPDATE SET fetched_ts = excluded.fetched_ts, og = excluded.og`, url, fetchedTS, og)
	if err != nil {
		return fmt.Errorf("storage: store URL preview: %w", err)
	}
	return nil
}

// DeleteURLPreviewsBefore drops cached previews fetched before ts.
func (db *DB) DeleteURLPreviewsBefore(ctx context.Context, ts int64) (int64, error) {
	res, err := db.ExecContext(ctx, `DELETE FROM media_url_previews WHERE fetched_ts < $1`, ts)
	if err != nil {
		return 0, fmt.Errorf("storage: delete URL previews: %w", err)
	}
	n, _ := res.RowsAffected()
	return n, nil
}

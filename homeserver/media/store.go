package media

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"time"
)

// Store keeps media content addressed by the hex SHA-256 of its bytes, so
// that identical content is stored once whoever uploads it and under
// however many media IDs. The metadata (which media IDs use which content)
// lives in the database; the store only holds bytes.
//
// FSStore keeps them on the local filesystem; an object store (S3) can
// implement the same interface.
type Store interface {
	// Put streams r into the store while hashing it, without ever holding
	// the whole content in memory. The content is not visible under its
	// hash until the returned Staged is committed, which lets the caller
	// commit and record the new reference under one lock (see
	// Service.lockHash). An error from r is returned as is (wrapped).
	Put(ctx context.Context, r io.Reader) (Staged, error)
	// Open opens committed content for reading. Missing content gives an
	// error wrapping fs.ErrNotExist.
	Open(ctx context.Context, hash string) (io.ReadSeekCloser, error)
	// Delete removes content; missing content is not an error.
	Delete(ctx context.Context, hash string) error
}

// Staged is content written by Store.Put but not yet committed.
type Staged interface {
	// Hash is the hex SHA-256 of the content.
	Hash() string
	// Size is its length in bytes.
	Size() int64
	// Commit makes the content readable under Hash. Committing content
	// that is already stored keeps the stored copy.
	Commit() error
	// Discard drops the staged content. It is a no-op after Commit.
	Discard() error
}

// validHash reports whether h is a lowercase hex SHA-256. Store paths are
// built from hashes, so nothing else may reach the filesystem.
func validHash(h string) bool {
	if len(h) != sha256.Size*2 {
		return false
	}
	for _, c := range h {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// FSStore is a Store on the local filesystem. Content lives at
// <root>/ab/cd/abcd…(the full hash); uploads are written to <root>/tmp
// first, on the same filesystem, so that committing is an atomic rename.
type FSStore struct {
	root string
}

// staleTempAge is how old an upload's temporary file must be before
// NewFSStore removes it as left behind by a crash; younger ones may belong
// to another process sharing the directory.
const staleTempAge = 24 * time.Hour

// NewFSStore opens (creating if needed) a store rooted at dir.
func NewFSStore(dir string) (*FSStore, error) {
	if err := os.MkdirAll(filepath.Join(dir, "tmp"), 0o700); err != nil {
		return nil, fmt.Errorf("media store: %w", err)
	}
	s := &FSStore{root: dir}
	entries, err := os.ReadDir(filepath.Join(dir, "tmp"))
	if err != nil {
		return nil, fmt.Errorf("media store: %w", err)
	}
	for _, e := range entries {
		if info, err := e.Info(); err == nil && time.Since(info.ModTime()) > staleTempAge {
			_ = os.Remove(filepath.Join(dir, "tmp", e.Name()))
		}
	}
	return s, nil
}

func (s *FSStore) path(hash string) (string, error) {
	if !validHash(hash) {
		return "", fmt.Errorf("media store: invalid content hash %q", hash)
	}
	return filepath.Join(s.root, hash[0:2], hash[2:4], hash), nil
}

// Put implements Store.
func (s *FSStore) Put(ctx context.Context, r io.Reader) (Staged, error) {
	f, err := os.CreateTemp(filepath.Join(s.root, "tmp"), "upload-*")
	if err != nil {
		return nil, fmt.Errorf("media store: %w", err)
	}
	st := &fsStaged{store: s, tmp: f.Name(), h: sha256.New()}
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(st.tmp)
		}
	}()
	st.size, err = io.Copy(io.MultiWriter(f, st.h), ctxReader{ctx, r})
	if err != nil {
		return nil, fmt.Errorf("media store: writing content: %w", err)
	}
	// The upload is acknowledged once its metadata commits; the bytes must
	// be on disk by then.
	if err := f.Sync(); err != nil {
		return nil, fmt.Errorf("media store: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("media store: %w", err)
	}
	st.hash = hex.EncodeToString(st.h.Sum(nil))
	ok = true
	return st, nil
}

// Open implements Store.
func (s *FSStore) Open(_ context.Context, hash string) (io.ReadSeekCloser, error) {
	p, err := s.path(hash)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("media store: %w", err)
	}
	return f, nil
}

// Delete implements Store.
func (s *FSStore) Delete(_ context.Context, hash string) error {
	p, err := s.path(hash)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("media store: %w", err)
	}
	return nil
}

type fsStaged struct {
	store *FSStore
	tmp   string
	h     hash.Hash
	hash  string
	size  int64
	done  bool
}

func (st *fsStaged) Hash() string { return st.hash }
func (st *fsStaged) Size() int64  { return st.size }

func (st *fsStaged) Commit() error {
	if st.done {
		return nil
	}
	p, err := st.store.path(st.hash)
	if err != nil {
		return err
	}
	if _, err := os.Stat(p); err == nil {
		// Identical content is already stored: keep that copy.
		st.done = true
		return os.Remove(st.tmp)
	}
	dir := filepath.Dir(p)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("media store: %w", err)
	}
	if err := os.Rename(st.tmp, p); err != nil {
		return fmt.Errorf("media store: %w", err)
	}
	st.done = true
	// Make the rename itself durable.
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

func (st *fsStaged) Discard() error {
	if st.done {
		return nil
	}
	st.done = true
	if err := os.Remove(st.tmp); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// ctxReader stops a long copy when the request is cancelled.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

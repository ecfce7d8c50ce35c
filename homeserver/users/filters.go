package users

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/parley-chat/parley/homeserver/filter"
)

// CreateFilter validates and stores a filter for dev's user and returns its
// ID. A filter the user already stored gets its earlier ID back, since
// clients upload the same filter every time they start. The error of a
// bad filter is a *filter.Error.
func (s *Service) CreateFilter(ctx context.Context, dev *Device, body []byte) (string, error) {
	f, err := filter.Parse(body)
	if err != nil {
		return "", err
	}
	// Stored in normal form: identical filters hash alike whatever their
	// spacing or key order.
	normal, err := json.Marshal(f)
	if err != nil {
		return "", err
	}
	hash := sha256.Sum256(normal)
	id, err := s.db.PutFilter(ctx, dev.Localpart, hash[:], string(normal))
	if err != nil {
		return "", err
	}
	return strconv.FormatInt(id, 10), nil
}

// Filter returns a filter of dev's user by ID, or ErrNotFound.
func (s *Service) Filter(ctx context.Context, dev *Device, filterID string) (*filter.Filter, error) {
	return s.filterByID(ctx, dev.Localpart, filterID)
}

func (s *Service) filterByID(ctx context.Context, localpart, filterID string) (*filter.Filter, error) {
	n, err := strconv.ParseInt(filterID, 10, 64)
	if err != nil {
		return nil, fmt.Errorf("%w: no such filter", ErrNotFound)
	}
	raw, err := s.db.GetFilter(ctx, localpart, n)
	if err != nil {
		return nil, storageErr(err, "filter")
	}
	return filter.Parse([]byte(raw))
}

// LoadFilter resolves the filter parameter of /sync, /messages and the
// like: inline JSON when it starts with '{', else the ID of one of the
// user's stored filters. An empty param returns nil, nil (no filter: the
// filter package treats a nil filter as allowing everything). A bad or
// unknown filter is a *filter.Error (code M_NOT_FOUND for an unknown ID).
func (s *Service) LoadFilter(ctx context.Context, userID, param string) (*filter.Filter, error) {
	if param == "" {
		return nil, nil
	}
	if strings.HasPrefix(param, "{") {
		return filter.Parse([]byte(param))
	}
	localpart, ok := s.localpart(userID)
	if !ok {
		return nil, &filter.Error{Code: "M_NOT_FOUND", Message: "no such filter"}
	}
	f, err := s.filterByID(ctx, localpart, param)
	if errors.Is(err, ErrNotFound) {
		return nil, &filter.Error{Code: "M_NOT_FOUND", Message: "no such filter: " + param}
	}
	return f, err
}

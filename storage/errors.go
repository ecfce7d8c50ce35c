package storage

import (
	"database/sql"
	"errors"
	"fmt"
)

// ErrNotFound is returned when a looked-up row does not exist.
var ErrNotFound = errors.New("storage: not found")

// notFound maps sql.ErrNoRows to ErrNotFound and wraps other errors.
func notFound(err error, what string) error {
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("%w: %s", ErrNotFound, what)
	}
	return fmt.Errorf("storage: %s: %w", what, err)
}

func isNotFound(err error) bool { return errors.Is(err, ErrNotFound) }

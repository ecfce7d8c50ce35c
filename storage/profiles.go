package storage

import (
	"context"
	"database/sql"
)

// Profile is a local user's public profile. Empty fields are not set.
type Profile struct {
	DisplayName string
	AvatarURL   string
	Deactivated bool
}

// GetProfile loads a local user's profile, or returns ErrNotFound when the
// account does not exist.
func (db *DB) GetProfile(ctx context.Context, localpart string) (*Profile, error) {
	var (
		p            Profile
		name, avatar sql.NullString
	)
	err := db.QueryRowContext(ctx, `SELECT displayname, avatar_url, deactivated FROM accounts WHERE localpart = $1`, localpart).
		Scan(&name, &avatar, &p.Deactivated)
	if err != nil {
		return nil, notFound(err, "profile")
	}
	p.DisplayName, p.AvatarURL = name.String, avatar.String
	return &p, nil
}

// SetDisplayName sets a user's display name; "" removes it. It returns the
// whole profile as stored.
func (db *DB) SetDisplayName(ctx context.Context, localpart, name string) (*Profile, error) {
	return db.setProfileField(ctx, localpart, "displayname", name)
}

// SetAvatarURL sets a user's avatar URL; "" removes it. It returns the whole
// profile as stored.
func (db *DB) SetAvatarURL(ctx context.Context, localpart, url string) (*Profile, error) {
	return db.setProfileField(ctx, localpart, "avatar_url", url)
}

// setProfileField updates column (a constant chosen by the caller, never
// user input) of an active account and returns the profile as written.
func (db *DB) setProfileField(ctx context.Context, localpart, column, value string) (*Profile, error) {
	var (
		p            Profile
		name, avatar sql.NullString
	)
	err := db.QueryRowContext(ctx, `UPDATE accounts SET `+column+` = $2 WHERE localpart = $1 AND NOT deactivated
		RETURNING displayname, avatar_url`, localpart, nullString(value)).Scan(&name, &avatar)
	if err != nil {
		return nil, notFound(err, "profile")
	}
	p.DisplayName, p.AvatarURL = name.String, avatar.String
	return &p, nil
}

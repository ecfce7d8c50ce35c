package rooms

import (
	"context"
	"errors"
	"strings"
)

// ErrExclusive: the alias (or user) is reserved by an application service
// (M_EXCLUSIVE).
var ErrExclusive = errors.New("reserved by an application service")

// NamespaceHooks let application services (bridges) own parts of the user
// and alias space: they are asked about users and aliases that do not
// exist yet, and may reserve aliases. Every hook may be nil.
type NamespaceHooks struct {
	// QueryUser is called before a local user is invited (also by
	// /createRoom), so that a bridge can create the user it represents
	// first. It returns when the question is answered, whatever the answer.
	QueryUser func(ctx context.Context, userID string)
	// QueryAlias is called when a local alias is unknown; true means that
	// an application service has just created it, so look again.
	QueryAlias func(ctx context.Context, alias string) bool
	// CheckAliasCreation returns an error wrapping ErrExclusive when
	// creator may not create alias.
	CheckAliasCreation func(ctx context.Context, alias, creator string) error
}

// SetNamespaceHooks installs the application services' hooks; set them
// before serving.
func (e *Engine) SetNamespaceHooks(h NamespaceHooks) { e.namespaces = h }

// CommittedPosition is the stream position up to which every event is
// committed (or abandoned): how far a reader of the event stream may read.
func (e *Engine) CommittedPosition() int64 { return e.cfg.Positions.Current() }

func (e *Engine) queryUser(ctx context.Context, userID string) {
	if e.namespaces.QueryUser != nil && strings.HasSuffix(userID, ":"+e.cfg.ServerName) {
		e.namespaces.QueryUser(ctx, userID)
	}
}

func (e *Engine) queryAlias(ctx context.Context, alias string) bool {
	return e.namespaces.QueryAlias != nil && strings.HasSuffix(alias, ":"+e.cfg.ServerName) && e.namespaces.QueryAlias(ctx, alias)
}

func (e *Engine) checkAliasCreation(ctx context.Context, alias, creator string) error {
	if e.namespaces.CheckAliasCreation == nil {
		return nil
	}
	return e.namespaces.CheckAliasCreation(ctx, alias, creator)
}

// Package ignored reads a user's ignore list (the m.ignored_user_list
// global account data), which decides whose events the server keeps from
// them: timelines, invites, aggregations, search results.
package ignored

import (
	"context"
	"encoding/json"
	"errors"
	"sort"
	"strings"

	"github.com/parley-chat/parley/storage"
)

// EventType is the account data type of the ignore list.
const EventType = "m.ignored_user_list"

// Set is the set of user IDs a user ignores.
type Set map[string]bool

// Users returns the users userID ignores. Only users of serverName have
// account data here; others ignore no one. The list is read on every call,
// so a change takes effect with the next request, as the spec asks.
func Users(ctx context.Context, db *storage.DB, serverName, userID string) (Set, error) {
	localpart, ok := localpartOf(userID, serverName)
	if !ok {
		return nil, nil
	}
	raw, err := db.GetAccountData(ctx, localpart, "", EventType)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return Parse(raw), nil
}

// Parse reads m.ignored_user_list content; anything malformed ignores
// no one.
func Parse(content []byte) Set {
	var c struct {
		IgnoredUsers map[string]json.RawMessage `json:"ignored_users"`
	}
	if json.Unmarshal(content, &c) != nil || len(c.IgnoredUsers) == 0 {
		return nil
	}
	s := make(Set, len(c.IgnoredUsers))
	for u := range c.IgnoredUsers {
		if strings.HasPrefix(u, "@") {
			s[u] = true
		}
	}
	return s
}

// List returns the set's user IDs, sorted (for SQL exclusion lists).
func (s Set) List() []string {
	out := make([]string, 0, len(s))
	for u := range s {
		out = append(out, u)
	}
	sort.Strings(out)
	return out
}

// Hides reports whether an event sent by sender, a state event when
// isState, is kept from the ignoring user. State events never are: the
// room must look the same to everyone.
func (s Set) Hides(sender string, isState bool) bool {
	return !isState && s[sender]
}

func localpartOf(userID, serverName string) (string, bool) {
	if !strings.HasPrefix(userID, "@") {
		return "", false
	}
	lp, server, ok := strings.Cut(userID[1:], ":")
	return lp, ok && lp != "" && server == serverName
}

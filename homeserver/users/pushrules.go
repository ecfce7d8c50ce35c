package users

import (
	"context"
	"errors"
	"fmt"

	"github.com/parley-chat/parley/storage"
)

// PushRulesType is the global account data type holding a user's push
// rules. Clients read it (in /sync and the account data API) but change it
// only through the /pushrules API, which the push service implements on top
// of the two methods below.
const PushRulesType = "m.push_rules"

// PushRules returns a local user's stored m.push_rules content, or nil
// when the user never changed their rules.
func (s *Service) PushRules(ctx context.Context, userID string) ([]byte, error) {
	localpart, ok := s.localpart(userID)
	if !ok {
		return nil, fmt.Errorf("%w: %s is not a local user", ErrNotFound, userID)
	}
	c, err := s.db.GetAccountData(ctx, localpart, "", PushRulesType)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, nil
	}
	return c, err
}

// UpdatePushRules replaces a local user's m.push_rules content with what
// update makes of the current one (nil when there is none), in one
// transaction, so that concurrent changes do not lose each other. update
// returns storage.ErrUnchanged to leave it as it is; any other error is
// returned as is. The user's /sync requests are woken when it changed.
func (s *Service) UpdatePushRules(ctx context.Context, userID string, update func(old []byte) ([]byte, error)) error {
	localpart, ok := s.localpart(userID)
	if !ok {
		return fmt.Errorf("%w: %s is not a local user", ErrNotFound, userID)
	}
	pos, err := s.db.UpdateAccountData(ctx, localpart, "", PushRulesType, func(old []byte) ([]byte, error) {
		content, err := update(old)
		if err != nil {
			return nil, err
		}
		return compactObject(content)
	})
	if err != nil {
		return err
	}
	if pos != 0 {
		s.notifyAccountData(userID)
	}
	return nil
}

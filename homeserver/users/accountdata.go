package users

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/parley-chat/parley/matrix/id"
	"github.com/parley-chat/parley/storage"
)

// AccountDataEvent is one account data entry as /sync shows it, ready to
// marshal into an "events" list.
type AccountDataEvent struct {
	Type    string          `json:"type"`
	Content json.RawMessage `json:"content"`
}

// TagType is the room account data type holding a room's tags.
const TagType = "m.tag"

// serverManagedTypes are account data the server writes itself through
// other endpoints; the spec has clients read them but not set them.
var serverManagedTypes = map[string]bool{"m.fully_read": true, "m.push_rules": true}

// maxTypeLength bounds account data types and tag names (the spec limits
// tags to 255 bytes; types follow suit).
const maxTypeLength = 255

// checkAccountDataKey validates an account data type and, unless empty, a
// room ID.
func checkAccountDataKey(roomID, typ string) error {
	if typ == "" || len(typ) > maxTypeLength {
		return fmt.Errorf("%w: the account data type must be 1 to %d bytes long", ErrInvalidParam, maxTypeLength)
	}
	if roomID != "" {
		if _, err := id.ParseRoomID(roomID); err != nil {
			return fmt.Errorf("%w: %v", ErrInvalidParam, err)
		}
	}
	return nil
}

// compactObject checks that content is a JSON object and compacts it.
func compactObject(content []byte) ([]byte, error) {
	var buf bytes.Buffer
	if err := json.Compact(&buf, content); err != nil {
		return nil, fmt.Errorf("%w: content is not valid JSON", ErrBadJSON)
	}
	if buf.Len() == 0 || buf.Bytes()[0] != '{' {
		return nil, fmt.Errorf("%w: content must be a JSON object", ErrBadJSON)
	}
	return buf.Bytes(), nil
}

// SetAccountData stores dev's user's account data of type typ: global when
// roomID is "", else for that room. content must be a JSON object. It
// returns ErrServerManaged for types clients may not set.
func (s *Service) SetAccountData(ctx context.Context, dev *Device, roomID, typ string, content []byte) error {
	if err := checkAccountDataKey(roomID, typ); err != nil {
		return err
	}
	if serverManagedTypes[typ] {
		return fmt.Errorf("%w: cannot set %s through this API", ErrServerManaged, typ)
	}
	content, err := compactObject(content)
	if err != nil {
		return err
	}
	if _, err := s.db.PutAccountData(ctx, dev.Localpart, roomID, typ, content); err != nil {
		return err
	}
	s.notifyAccountData(dev.UserID)
	return nil
}

// AccountData returns dev's user's account data of type typ (global when
// roomID is ""), or ErrNotFound.
func (s *Service) AccountData(ctx context.Context, dev *Device, roomID, typ string) (json.RawMessage, error) {
	if err := checkAccountDataKey(roomID, typ); err != nil {
		return nil, err
	}
	c, err := s.db.GetAccountData(ctx, dev.Localpart, roomID, typ)
	if err != nil {
		return nil, storageErr(err, "account data")
	}
	return c, nil
}

// AccountDataSince returns the account data of a local user that changed
// after stream position since, up to upto (inclusive): the global entries
// and, per room ID, the room entries. Each changed entry appears once with
// its current content; since 0 returns everything. /sync uses it with upto
// from CurrentAccountDataPos taken when it starts.
func (s *Service) AccountDataSince(ctx context.Context, userID string, since, upto int64) (global []AccountDataEvent, perRoom map[string][]AccountDataEvent, err error) {
	localpart, ok := s.localpart(userID)
	if !ok {
		return nil, nil, fmt.Errorf("%w: %s is not a local user", ErrNotFound, userID)
	}
	rows, err := s.db.AccountDataSince(ctx, localpart, since, upto)
	if err != nil {
		return nil, nil, err
	}
	for _, r := range rows {
		ev := AccountDataEvent{Type: r.Type, Content: r.Content}
		if r.RoomID == "" {
			global = append(global, ev)
			continue
		}
		if perRoom == nil {
			perRoom = make(map[string][]AccountDataEvent)
		}
		perRoom[r.RoomID] = append(perRoom[r.RoomID], ev)
	}
	return global, perRoom, nil
}

// CurrentAccountDataPos is the latest account data stream position; every
// change up to it is committed.
func (s *Service) CurrentAccountDataPos(ctx context.Context) (int64, error) {
	return s.db.StreamPosition(ctx, storage.StreamAccountData)
}

func (s *Service) notifyAccountData(userID string) {
	if h := s.hook().NotifyAccountData; h != nil {
		h(userID)
	}
}

// tagContent is the content of an m.tag event.
type tagContent struct {
	Tags map[string]json.RawMessage `json:"tags"`
}

// Tags returns the tags dev's user put on a room: tag name to tag object.
func (s *Service) Tags(ctx context.Context, dev *Device, roomID string) (map[string]json.RawMessage, error) {
	c, err := s.AccountData(ctx, dev, roomID, TagType)
	if errors.Is(err, ErrNotFound) {
		return map[string]json.RawMessage{}, nil
	}
	if err != nil {
		return nil, err
	}
	return decodeTags(c)
}

func decodeTags(c []byte) (map[string]json.RawMessage, error) {
	var t tagContent
	if len(c) > 0 {
		// Stored by a client through the account data API it may have any
		// shape; an unusable one counts as no tags.
		_ = json.Unmarshal(c, &t)
	}
	if t.Tags == nil {
		t.Tags = map[string]json.RawMessage{}
	}
	return t.Tags, nil
}

// SetTag adds (or replaces) a tag on a room for dev's user. content is the
// tag object, whose "order", when present, must be a number.
func (s *Service) SetTag(ctx context.Context, dev *Device, roomID, tag string, content []byte) error {
	if err := checkTag(roomID, tag); err != nil {
		return err
	}
	content, err := compactObject(content)
	if err != nil {
		return err
	}
	var t struct {
		Order *json.RawMessage `json:"order"`
	}
	_ = json.Unmarshal(content, &t)
	if t.Order != nil {
		var order float64
		if json.Unmarshal(*t.Order, &order) != nil {
			return fmt.Errorf("%w: order must be a number", ErrBadJSON)
		}
	}
	return s.updateTags(ctx, dev, roomID, func(tags map[string]json.RawMessage) bool {
		if bytes.Equal(tags[tag], content) {
			return false
		}
		tags[tag] = content
		return true
	})
}

// RemoveTag removes a tag from a room for dev's user; removing a tag the
// room does not have is not an error.
func (s *Service) RemoveTag(ctx context.Context, dev *Device, roomID, tag string) error {
	if err := checkTag(roomID, tag); err != nil {
		return err
	}
	return s.updateTags(ctx, dev, roomID, func(tags map[string]json.RawMessage) bool {
		if _, ok := tags[tag]; !ok {
			return false
		}
		delete(tags, tag)
		return true
	})
}

func checkTag(roomID, tag string) error {
	if err := checkAccountDataKey(roomID, TagType); err != nil {
		return err
	}
	if roomID == "" {
		return fmt.Errorf("%w: tags belong to a room", ErrInvalidParam)
	}
	if tag == "" || len(tag) > maxTypeLength {
		return fmt.Errorf("%w: tag names must be 1 to %d bytes long", ErrInvalidParam, maxTypeLength)
	}
	return nil
}

// updateTags changes the m.tag entry of a room in one transaction, so that
// two devices tagging the same room at once both succeed.
func (s *Service) updateTags(ctx context.Context, dev *Device, roomID string, change func(map[string]json.RawMessage) bool) error {
	pos, err := s.db.UpdateAccountData(ctx, dev.Localpart, roomID, TagType, func(old []byte) ([]byte, error) {
		tags, _ := decodeTags(old)
		if !change(tags) {
			return nil, storage.ErrUnchanged
		}
		return json.Marshal(tagContent{Tags: tags})
	})
	if err != nil {
		return err
	}
	if pos != 0 {
		s.notifyAccountData(dev.UserID)
	}
	return nil
}

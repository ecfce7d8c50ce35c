// Package search is server-side search (POST /search): it indexes the
// searchable text of events into the database's full-text index and
// answers searches with the events the searcher may see.
package search

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"unicode"

	"github.com/sirupsen/logrus"

	"github.com/parley-chat/parley/homeserver/filter"
	"github.com/parley-chat/parley/homeserver/rooms"
	"github.com/parley-chat/parley/homeserver/sync"
	"github.com/parley-chat/parley/storage"
)

// The keys the spec makes searchable, with the event type each belongs to.
const (
	KeyBody  = "content.body"
	KeyName  = "content.name"
	KeyTopic = "content.topic"
)

// ErrBadRequest: the search request is malformed (an unknown key or
// ordering, a bad next_batch token).
var ErrBadRequest = errors.New("bad search request")

// Service indexes and searches events.
type Service struct {
	db         *storage.DB
	rooms      *rooms.Engine
	serverName string
	log        logrus.FieldLogger
	catchUp    func(ctx context.Context) error
}

// New returns the search service.
func New(db *storage.DB, engine *rooms.Engine, serverName string, log logrus.FieldLogger) *Service {
	return &Service{db: db, rooms: engine, serverName: serverName, log: log}
}

// SetCatchUp installs the function a search calls first to wait for the
// index, so that a user finds what they just sent.
func (s *Service) SetCatchUp(f func(ctx context.Context) error) { s.catchUp = f }

// maxTextBytes bounds the text indexed from one event.
const maxTextBytes = 16 << 10

// Index is the indexer function: it adds the searchable text of committed
// events and removes redacted events.
func (s *Service) Index(ctx context.Context, rows []*storage.EventRow) error {
	var docs []storage.SearchDoc
	var redacted []string
	for _, row := range rows {
		if row.RedactedBy != "" {
			redacted = append(redacted, row.EventID)
			continue
		}
		var ev struct {
			Redacts string          `json:"redacts"`
			Content json.RawMessage `json:"content"`
		}
		if json.Unmarshal([]byte(row.JSON), &ev) != nil {
			continue
		}
		if row.Type == "m.room.redaction" {
			target := ev.Redacts
			if target == "" {
				var c struct {
					Redacts string `json:"redacts"`
				}
				_ = json.Unmarshal(ev.Content, &c)
				target = c.Redacts
			}
			if target != "" {
				redacted = append(redacted, target)
			}
			continue
		}
		key, text := searchableText(row.Type, row.StateKey, ev.Content)
		if text == "" {
			continue
		}
		if len(text) > maxTextBytes {
			text = strings.ToValidUTF8(text[:maxTextBytes], "")
		}
		docs = append(docs, storage.SearchDoc{EventID: row.EventID, RoomID: row.RoomID, Sender: row.Sender, Type: row.Type,
			Key: key, StreamPos: row.StreamPos, OriginServerTS: row.OriginServerTS, Text: text})
	}
	if err := s.db.IndexSearchDocs(ctx, docs); err != nil {
		return err
	}
	return s.db.DeleteSearchDocs(ctx, redacted)
}

// searchableText is the key and text the spec makes searchable in an
// event: an m.room.message's body, an m.room.name's name, an m.room.topic's
// topic and the text/plain body of its m.topic.
func searchableText(eventType string, stateKey *string, content json.RawMessage) (string, string) {
	var c struct {
		Body   any `json:"body"`
		Name   any `json:"name"`
		Topic  any `json:"topic"`
		MTopic any `json:"m.topic"`
	}
	if json.Unmarshal(content, &c) != nil {
		return "", ""
	}
	str := func(v any) string { s, _ := v.(string); return s }
	switch {
	case eventType == "m.room.message" && stateKey == nil:
		return KeyBody, str(c.Body)
	case eventType == "m.room.name" && stateKey != nil && *stateKey == "":
		return KeyName, str(c.Name)
	case eventType == "m.room.topic" && stateKey != nil && *stateKey == "":
		text := str(c.Topic)
		if plain := plainTopic(c.MTopic); plain != "" && plain != text {
			text = strings.TrimSpace(text + "\n" + plain)
		}
		return KeyTopic, text
	}
	return "", ""
}

// plainTopic is the body of the text/plain representation in m.topic.
func plainTopic(v any) string {
	m, _ := v.(map[string]any)
	reps, _ := m["m.text"].([]any)
	for _, r := range reps {
		rep, _ := r.(map[string]any)
		mime, _ := rep["mimetype"].(string)
		body, _ := rep["body"].(string)
		if mime == "" || mime == "text/plain" {
			return body
		}
	}
	return ""
}

// Words splits a search term into the words the index matches: runs of
// letters and digits, lower-cased, without repeats, at most 16.
func Words(term string) []string {
	seen := map[string]bool{}
	var out []string
	for _, w := range strings.FieldsFunc(strings.ToLower(term), func(r rune) bool {
		return !unicode.IsLetter(r) && !unicode.IsDigit(r)
	}) {
		if len(w) > 64 {
			w = strings.ToValidUTF8(w[:64], "")
		}
		if !seen[w] {
			seen[w] = true
			out = append(out, w)
		}
		if len(out) == 16 {
			break
		}
	}
	return out
}

// Request is a room_events search.
type Request struct {
	Viewer rooms.Viewer
	Term   string
	// Keys are the keys to search; empty means all three.
	Keys []string
	// Filter restricts rooms, senders and types; its limit bounds the
	// results per page.
	Filter *filter.RoomEventFilter
	// Recent orders by recency instead of rank.
	Recent bool
	// Context, when set, adds the events around each result.
	Context      *ContextRequest
	IncludeState bool
	// GroupBy lists "room_id" and/or "sender".
	GroupBy []string
	// NextBatch is the token of a previous response.
	NextBatch string
}

// ContextRequest is event_context.
type ContextRequest struct {
	BeforeLimit, AfterLimit int
	IncludeProfile          bool
}

// RoomEvents is the room_events category of the response.
type RoomEvents struct {
	Count      int                             `json:"count"`
	Highlights []string                        `json:"highlights"`
	Results    []Result                        `json:"results"`
	State      map[string][]*rooms.ClientEvent `json:"state,omitempty"`
	Groups     map[string]map[string]*Group    `json:"groups,omitempty"`
	NextBatch  string                          `json:"next_batch,omitempty"`
}

// Result is one matching event.
type Result struct {
	Rank    float64            `json:"rank"`
	Result  *rooms.ClientEvent `json:"result"`
	Context *EventContext      `json:"context,omitempty"`
}

// EventContext is the context of a result.
type EventContext struct {
	Start        string               `json:"start"`
	End          string               `json:"end"`
	ProfileInfo  map[string]Profile   `json:"profile_info,omitempty"`
	EventsBefore []*rooms.ClientEvent `json:"events_before"`
	EventsAfter  []*rooms.ClientEvent `json:"events_after"`
}

// Profile is a sender's display name and avatar as they were at the result.
type Profile struct {
	DisplayName string `json:"displayname,omitempty"`
	AvatarURL   string `json:"avatar_url,omitempty"`
}

// Group is one value of a grouping.
type Group struct {
	Order   int      `json:"order"`
	Results []string `json:"results"`
}

// cursor is the opaque next_batch token: where the previous page stopped.
type cursor struct {
	Recent bool   `json:"r,omitempty"`
	Offset int    `json:"o,omitempty"`
	Before int64  `json:"b,omitempty"`
	Term   string `json:"t"`
}

func (c cursor) encode() string {
	raw, _ := json.Marshal(c)
	return base64.RawURLEncoding.EncodeToString(raw)
}

func decodeCursor(s string) (cursor, error) {
	raw, err := base64.RawURLEncoding.DecodeString(s)
	var c cursor
	if err == nil {
		err = json.Unmarshal(raw, &c)
	}
	if err != nil {
		return cursor{}, errors.Join(ErrBadRequest, errors.New("invalid next_batch token"))
	}
	return c, nil
}

// Limits on one search.
const (
	defaultLimit = 10
	maxLimit     = 100
	// maxScans bounds the index pages read for one response when many
	// matches are hidden from the searcher.
	maxScans = 10
	// countSample is how many matches are checked for visibility to
	// estimate count; beyond it the count is extrapolated.
	countSample = 500
)

// token formats a stream position as a pagination token.
func token(pos int64) string { return sync.Token{Events: pos}.String() }

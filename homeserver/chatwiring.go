package homeserver

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/parley-chat/parley/clientapi"
	"github.com/parley-chat/parley/homeserver/appservice"
	"github.com/parley-chat/parley/homeserver/directory"
	"github.com/parley-chat/parley/homeserver/indexer"
	"github.com/parley-chat/parley/homeserver/notices"
	"github.com/parley-chat/parley/homeserver/relations"
	"github.com/parley-chat/parley/homeserver/reports"
	"github.com/parley-chat/parley/homeserver/search"
	"github.com/parley-chat/parley/homeserver/upgrade"
	"github.com/parley-chat/parley/matrix/event"
)

// chatIndexWait bounds how long a read of the chat indexes (search,
// relations, user directory) waits for events committed before it.
const chatIndexWait = 2 * time.Second

// chat holds the everyday chat services: relations and threads, the
// directories, search, room upgrades, reports and server notices.
type chat struct {
	api   clientapi.ChatConfig
	index *indexer.Tailer
}

// buildChat assembles the chat services and hooks them to the room
// engine: the relations listener, the bundled aggregations and the index
// that relations, search and the user directory are built from. Run starts
// the index (startChat).
func (s *Server) buildChat() {
	log := s.log.WithField("component", "chat")
	name := s.cfg.ServerName
	rel := relations.New(s.DB, s.Rooms, name, log)
	srch := search.New(s.DB, s.Rooms, name, log)
	dcfg := directory.Config{ServerName: name, SearchAllLocalUsers: s.cfg.UserDirectory.SearchAllLocalUsers, Log: log}
	if s.AppServices != nil {
		// Bridges keep directories of their networks' rooms.
		dcfg.NetworkRooms = func(ctx context.Context, instanceID string) ([]string, error) {
			ids, err := s.AppServices.PublishedRooms(ctx, instanceID)
			if errors.Is(err, appservice.ErrNotFound) {
				return nil, fmt.Errorf("%w: %v", directory.ErrUnknownNetwork, err)
			}
			return ids, err
		}
	}
	dir := directory.New(dcfg, s.DB, s.Rooms)
	index := indexer.New(s.DB, "chat", s.Rooms.CurrentStreamPos, log.WithField("index", "chat"), rel.Index, srch.Index, dir.Index)
	catchUp := func(ctx context.Context) error { return index.WaitCurrent(ctx, chatIndexWait) }
	rel.SetCatchUp(catchUp)
	srch.SetCatchUp(catchUp)
	dir.SetCatchUp(catchUp)

	s.Rooms.AddListener(rel.OnEvent)
	s.Rooms.AddListener(func(*event.Event, int64) { index.Notify() })
	s.Rooms.SetAggregator(rel.Aggregate)

	nc := s.cfg.ServerNotices
	s.chat = &chat{index: index, api: clientapi.ChatConfig{
		Relations: rel,
		Directory: dir,
		Search:    srch,
		Upgrade:   upgrade.New(s.DB, s.Rooms, log),
		Reports:   reports.New(s.DB, s.Rooms, name),
		Notices: notices.New(notices.Config{Enabled: nc.Enabled, SenderLocalpart: nc.SenderLocalpart, RoomName: nc.RoomName, ServerName: name},
			s.DB, s.Rooms, s.Users),
	}}
}

// startChat runs the chat index until ctx ends or the returned function is
// called, which waits for it to stop (before the database closes).
func (s *Server) startChat(ctx context.Context) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.chat.index.Run(ctx)
	}()
	return func() {
		cancel()
		wg.Wait()
	}
}

// WaitChatIndex waits until the chat indexes (search, relations, user
// directory) hold every event committed before the call, or timeout.
func (s *Server) WaitChatIndex(ctx context.Context, timeout time.Duration) error {
	return s.chat.index.WaitCurrent(ctx, timeout)
}

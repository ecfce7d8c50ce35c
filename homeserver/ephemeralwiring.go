package homeserver

import (
	"context"
	"errors"
	gosync "sync"

	"github.com/parley-chat/parley/federation"
	"github.com/parley-chat/parley/homeserver/presence"
	"github.com/parley-chat/parley/homeserver/receipts"
	"github.com/parley-chat/parley/homeserver/rooms"
	"github.com/parley-chat/parley/homeserver/typing"
	"github.com/parley-chat/parley/matrix/event"
	"github.com/parley-chat/parley/storage"
)

// buildEphemeral assembles typing, receipts and presence, adds their /sync
// extensions (in this order, after the end-to-end encryption ones: tokens
// carry extension positions by registration order) and listens to the
// rooms for what concerns them. buildRooms calls it; federation is
// connected later by federateEphemeral.
func (s *Server) buildEphemeral() {
	members := roomMembers{engine: s.Rooms, db: s.DB}
	s.Typing = typing.New(typing.Config{
		ServerName: s.cfg.ServerName, Rooms: members, Notifier: s.Notifier,
		Log: s.log.WithField("component", "typing"),
	})
	s.Receipts = receipts.New(receipts.Config{
		ServerName: s.cfg.ServerName, DB: s.DB, Rooms: members, Notifier: s.Notifier,
		Log: s.log.WithField("component", "receipts"),
	})
	s.Presence = presence.New(presence.Config{
		Enabled: s.cfg.Presence.Enabled, ServerName: s.cfg.ServerName, DB: s.DB, Notifier: s.Notifier,
		Log: s.log.WithField("component", "presence"),
	})
	s.Typing.RegisterSync(s.Sync)
	s.Receipts.RegisterSync(s.Sync)
	s.Presence.RegisterSync(s.Sync)
	s.Rooms.AddListener(s.onRoomEventEphemeral)
}

// federateEphemeral connects typing, receipts and presence to other
// servers both ways.
func (s *Server) federateEphemeral() {
	out := eduSender{s.FederationSender}
	s.Typing.SetFederation(out)
	s.Receipts.SetFederation(out)
	s.Federation.HandleEDU("m.typing", s.typingACL(s.Typing.HandleEDU))
	s.Federation.HandleEDU("m.receipt", s.receiptACL(s.Receipts.HandleEDU))
	if s.Presence.Enabled() {
		s.Presence.SetFederation(out)
		s.Federation.HandleEDU("m.presence", s.Presence.HandleEDU)
	}
}

// startEphemeral runs presence's timeouts until ctx ends or the returned
// function is called, which waits for them to stop.
func (s *Server) startEphemeral(ctx context.Context) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	var wg gosync.WaitGroup
	wg.Go(func() { s.Presence.Run(ctx) })
	return func() {
		cancel()
		wg.Wait()
	}
}

// onRoomEventEphemeral is the room listener of typing and presence. It runs
// on the room's sequencer, so anything that may wait goes to a goroutine.
func (s *Server) onRoomEventEphemeral(ev *event.Event, _ int64) {
	if ev.Type() == "m.room.member" && ev.StateKey() != nil {
		target := *ev.StateKey()
		membership, _ := ev.Membership()
		if membership != "join" {
			s.Typing.MemberLeft(ev.RoomID(), target)
		} else if s.Presence.Enabled() {
			go s.Presence.MemberJoined(context.Background(), ev.RoomID(), target)
		}
		return
	}
	// Sending a message (or any event other than state, which the server
	// also sends on the user's behalf) is what the spec calls activity.
	if ev.StateKey() == nil && s.Presence.Enabled() && s.Users.IsLocal(ev.Sender()) {
		go s.Presence.Active(context.Background(), ev.Sender())
	}
}

// eduSender adapts the federation sender to the services' Federation
// interfaces.
type eduSender struct{ sender *federation.Sender }

func (e eduSender) SendEDU(destinations []string, eduType string, content any) {
	e.sender.EnqueueEDU(destinations, federation.EDU{Type: eduType, Content: content})
}

// roomMembers answers the services' membership questions: from the room
// engine's current state where it is in memory, else from storage.
type roomMembers struct {
	engine *rooms.Engine
	db     *storage.DB
}

func (m roomMembers) IsJoined(ctx context.Context, roomID, userID string) (bool, error) {
	ev, err := m.engine.CurrentStateEvent(ctx, roomID, "m.room.member", userID)
	if errors.Is(err, rooms.ErrNotFound) || err == nil && ev == nil {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	membership, _ := ev.Membership()
	return membership == "join", nil
}

func (m roomMembers) JoinedMembers(ctx context.Context, roomID string) ([]string, error) {
	ms, err := m.db.RoomMembers(ctx, roomID, "join")
	if err != nil {
		return nil, err
	}
	out := make([]string, len(ms))
	for i, mb := range ms {
		out[i] = mb.UserID
	}
	return out, nil
}

func (m roomMembers) JoinedAt(ctx context.Context, roomID, userID string) (int64, bool, error) {
	mb, err := m.db.GetMembership(ctx, roomID, userID)
	if errors.Is(err, storage.ErrNotFound) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	return mb.StreamPos, mb.Membership == "join", nil
}

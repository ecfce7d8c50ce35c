package federation

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"runtime"
	"sync"

	"github.com/parley-chat/parley/homeserver/rooms"
	"github.com/parley-chat/parley/matrix/event"
)

// roomClient implements rooms.Federation: the requests the room engine
// makes of other servers.
type roomClient struct {
	a      *API
	sender *Sender
}

var _ rooms.Federation = (*roomClient)(nil)

func esc(s string) string { return url.PathEscape(s) }

// supportedVersionsQuery is ver=1&ver=2... for make_join and make_knock.
func supportedVersionsQuery() string {
	q := url.Values{}
	for _, v := range event.KnownRoomVersions() {
		q.Add("ver", string(v))
	}
	return q.Encode()
}

type makeMembershipResponse struct {
	Event       json.RawMessage   `json:"event"`
	RoomVersion event.RoomVersion `json:"room_version"`
}

func (c *roomClient) MakeJoin(ctx context.Context, server, roomID, userID string) (event.RoomVersion, json.RawMessage, error) {
	var resp makeMembershipResponse
	path := "/_matrix/federation/v1/make_join/" + esc(roomID) + "/" + esc(userID) + "?" + supportedVersionsQuery()
	if err := c.a.client.Do(ctx, server, "GET", path, nil, &resp); err != nil {
		return "", nil, err
	}
	if resp.RoomVersion == "" {
		resp.RoomVersion = "1" // servers may omit it for version 1
	}
	return resp.RoomVersion, resp.Event, nil
}

// sendJoinResponse is the v2 send_join answer.
type sendJoinResponse struct {
	Origin    string            `json:"origin"`
	State     []json.RawMessage `json:"state"`
	AuthChain []json.RawMessage `json:"auth_chain"`
	Event     json.RawMessage   `json:"event"`
}

func (c *roomClient) SendJoin(ctx context.Context, server string, version event.RoomVersion, join *event.Event) (*rooms.SendJoinResponse, error) {
	var resp sendJoinResponse
	path := "/_matrix/federation/v2/send_join/" + esc(join.RoomID()) + "/" + esc(join.EventID())
	if err := c.a.client.Do(ctx, server, "PUT", path, json.RawMessage(join.JSON()), &resp); err != nil {
		return nil, err
	}
	out := &rooms.SendJoinResponse{Origin: server}
	// The state and the auth chain overlap (in a large room most of the
	// auth chain is member events that are also state): each event is
	// checked once, on all cores.
	lists := c.checkLists(ctx, version, resp.State, resp.AuthChain)
	out.State, out.AuthChain = lists[0], lists[1]
	var err error
	if len(resp.Event) > 0 {
		if out.Event, err = c.a.CheckPDU(ctx, resp.Event, version); err != nil {
			return nil, fmt.Errorf("send_join: the returned join: %w", err)
		}
	}
	return out, nil
}

// checkAll checks PDUs, dropping (and logging) those that fail: a resident
// server's bad event must not stop the join, and the auth checks that
// follow exclude whatever depends on it.
func (c *roomClient) checkAll(ctx context.Context, raws []json.RawMessage, version event.RoomVersion) ([]*event.Event, error) {
	return c.checkLists(ctx, version, raws)[0], nil
}

// checkLists checks the PDUs of several lists, each distinct one once and
// in parallel, and returns the lists of those that pass, in their order.
func (c *roomClient) checkLists(ctx context.Context, version event.RoomVersion, lists ...[]json.RawMessage) [][]*event.Event {
	index := map[string]int{}
	var unique []json.RawMessage
	for _, l := range lists {
		for _, raw := range l {
			if _, ok := index[string(raw)]; !ok {
				index[string(raw)] = len(unique)
				unique = append(unique, raw)
			}
		}
	}
	checked := make([]*event.Event, len(unique))
	var wg sync.WaitGroup
	next := make(chan int)
	for w := 0; w < runtime.GOMAXPROCS(0); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				ev, err := c.a.CheckPDU(ctx, unique[i], version)
				if err != nil {
					c.a.cfg.Log.WithError(err).Info("dropping an event that failed its checks")
					continue
				}
				checked[i] = ev
			}
		}()
	}
	for i := range unique {
		next <- i
	}
	close(next)
	wg.Wait()
	out := make([][]*event.Event, len(lists))
	for n, l := range lists {
		out[n] = make([]*event.Event, 0, len(l))
		for _, raw := range l {
			if ev := checked[index[string(raw)]]; ev != nil {
				out[n] = append(out[n], ev)
			}
		}
	}
	return out
}

func (c *roomClient) MakeLeave(ctx context.Context, server, roomID, userID string) (event.RoomVersion, json.RawMessage, error) {
	var resp makeMembershipResponse
	path := "/_matrix/federation/v1/make_leave/" + esc(roomID) + "/" + esc(userID)
	if err := c.a.client.Do(ctx, server, "GET", path, nil, &resp); err != nil {
		return "", nil, err
	}
	if resp.RoomVersion == "" {
		resp.RoomVersion = "1"
	}
	return resp.RoomVersion, resp.Event, nil
}

func (c *roomClient) SendLeave(ctx context.Context, server string, _ event.RoomVersion, leave *event.Event) error {
	path := "/_matrix/federation/v2/send_leave/" + esc(leave.RoomID()) + "/" + esc(leave.EventID())
	return c.a.client.Do(ctx, server, "PUT", path, json.RawMessage(leave.JSON()), nil)
}

func (c *roomClient) Invite(ctx context.Context, server string, version event.RoomVersion, invite *event.Event, stripped []json.RawMessage) (*event.Event, error) {
	if stripped == nil {
		stripped = []json.RawMessage{}
	}
	body := map[string]any{"event": json.RawMessage(invite.JSON()), "room_version": version, "invite_room_state": stripped}
	var resp struct {
		Event json.RawMessage `json:"event"`
	}
	path := "/_matrix/federation/v2/invite/" + esc(invite.RoomID()) + "/" + esc(invite.EventID())
	if err := c.a.client.Do(ctx, server, "PUT", path, body, &resp); err != nil {
		return nil, err
	}
	return c.a.CheckPDU(ctx, resp.Event, version)
}

func (c *roomClient) FetchEvent(ctx context.Context, server string, version event.RoomVersion, eventID string) (*event.Event, error) {
	var resp struct {
		PDUs []json.RawMessage `json:"pdus"`
	}
	if err := c.a.client.Do(ctx, server, "GET", "/_matrix/federation/v1/event/"+esc(eventID), nil, &resp); err != nil {
		return nil, err
	}
	if len(resp.PDUs) != 1 {
		return nil, fmt.Errorf("%s sent %d events for one", server, len(resp.PDUs))
	}
	ev, err := c.a.CheckPDU(ctx, resp.PDUs[0], version)
	if err != nil {
		return nil, err
	}
	if ev.EventID() != eventID {
		return nil, fmt.Errorf("%s sent event %s for %s", server, ev.EventID(), eventID)
	}
	return ev, nil
}

func (c *roomClient) StateIDs(ctx context.Context, server, roomID, eventID string) ([]string, []string, error) {
	var resp struct {
		PDUIDs       []string `json:"pdu_ids"`
		AuthChainIDs []string `json:"auth_chain_ids"`
	}
	path := "/_matrix/federation/v1/state_ids/" + esc(roomID) + "?event_id=" + url.QueryEscape(eventID)
	if err := c.a.client.Do(ctx, server, "GET", path, nil, &resp); err != nil {
		return nil, nil, err
	}
	return resp.PDUIDs, resp.AuthChainIDs, nil
}

func (c *roomClient) MissingEvents(ctx context.Context, server string, version event.RoomVersion, roomID string, earliest, latest []string, limit int) ([]*event.Event, error) {
	body := map[string]any{"earliest_events": nonNilStrings(earliest), "latest_events": nonNilStrings(latest), "limit": limit, "min_depth": 0}
	var resp struct {
		Events []json.RawMessage `json:"events"`
	}
	if err := c.a.client.Do(ctx, server, "POST", "/_matrix/federation/v1/get_missing_events/"+esc(roomID), body, &resp); err != nil {
		return nil, err
	}
	if len(resp.Events) > limit {
		resp.Events = resp.Events[:limit]
	}
	return c.checkAll(ctx, resp.Events, version)
}

func (c *roomClient) Backfill(ctx context.Context, server string, version event.RoomVersion, roomID string, from []string, limit int) ([]*event.Event, error) {
	q := url.Values{}
	for _, id := range from {
		q.Add("v", id)
	}
	q.Set("limit", fmt.Sprint(limit))
	var resp struct {
		PDUs []json.RawMessage `json:"pdus"`
	}
	if err := c.a.client.Do(ctx, server, "GET", "/_matrix/federation/v1/backfill/"+esc(roomID)+"?"+q.Encode(), nil, &resp); err != nil {
		return nil, err
	}
	if len(resp.PDUs) > limit {
		resp.PDUs = resp.PDUs[:limit]
	}
	return c.checkAll(ctx, resp.PDUs, version)
}

func (c *roomClient) QueryAlias(ctx context.Context, server, alias string) (string, []string, error) {
	var resp struct {
		RoomID  string   `json:"room_id"`
		Servers []string `json:"servers"`
	}
	if err := c.a.client.Do(ctx, server, "GET", "/_matrix/federation/v1/query/directory?room_alias="+url.QueryEscape(alias), nil, &resp); err != nil {
		return "", nil, err
	}
	return resp.RoomID, resp.Servers, nil
}

func (c *roomClient) Send(destinations []string, events []*event.Event) {
	c.sender.Enqueue(destinations, events)
}

func nonNilStrings(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func (c *roomClient) MakeKnock(ctx context.Context, server, roomID, userID string) (event.RoomVersion, json.RawMessage, error) {
	var resp makeMembershipResponse
	path := "/_matrix/federation/v1/make_knock/" + esc(roomID) + "/" + esc(userID) + "?" + supportedVersionsQuery()
	if err := c.a.client.Do(ctx, server, "GET", path, nil, &resp); err != nil {
		return "", nil, err
	}
	return resp.RoomVersion, resp.Event, nil
}

func (c *roomClient) SendKnock(ctx context.Context, server string, _ event.RoomVersion, knock *event.Event) ([]json.RawMessage, error) {
	var resp struct {
		KnockRoomState []json.RawMessage `json:"knock_room_state"`
	}
	path := "/_matrix/federation/v1/send_knock/" + esc(knock.RoomID()) + "/" + esc(knock.EventID())
	if err := c.a.client.Do(ctx, server, "PUT", path, json.RawMessage(knock.JSON()), &resp); err != nil {
		return nil, err
	}
	return resp.KnockRoomState, nil
}

package federation_test

import (
	"context"
	"fmt"
	"net/url"
	"sort"
	"strings"
	"testing"

	"maunium.net/go/mautrix"
	mevent "maunium.net/go/mautrix/event"
	mid "maunium.net/go/mautrix/id"
)

// A space of one organisation holding rooms of another: each server
// describes the rooms it is in to the other (federation /hierarchy), and
// only the rooms a user may see are listed.
func TestSpaceHierarchyAcrossServers(t *testing.T) {
	_, hs2, alice, bob := twoServers(t)
	ctx := context.Background()
	dave := fedUser(t, hs2, "dave")

	create := func(cli *mautrix.Client, req *mautrix.ReqCreateRoom) mid.RoomID {
		t.Helper()
		resp, err := cli.CreateRoom(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		return resp.RoomID
	}
	child := func(cli *mautrix.Client, space, room mid.RoomID, via string) {
		t.Helper()
		if _, err := cli.SendStateEvent(ctx, space, mevent.StateSpaceChild, room.String(), map[string]any{"via": []string{via}}); err != nil {
			t.Fatal(err)
		}
	}
	space := mautrix.ReqCreateRoom{Preset: "public_chat", CreationContent: map[string]any{"type": "m.space"}}
	// hs1: the agency's space S with a public room A, a private room P
	// and a room R for the space's members.
	spaceS := create(alice, &mautrix.ReqCreateRoom{Preset: space.Preset, CreationContent: space.CreationContent, Name: "S"})
	roomA := create(alice, &mautrix.ReqCreateRoom{Preset: "public_chat", Name: "A"})
	roomP := create(alice, &mautrix.ReqCreateRoom{Preset: "private_chat", Name: "P"})
	roomR := create(alice, &mautrix.ReqCreateRoom{Preset: "private_chat", Name: "R", RoomVersion: "10",
		InitialState: []*mevent.Event{{Type: mevent.StateJoinRules, Content: mevent.Content{Raw: map[string]any{
			"join_rule": "restricted", "allow": []any{map[string]any{"type": "m.room_membership", "room_id": spaceS.String()}}}}}}})
	// hs2: the partner's public room B and sub-space T with a room C.
	roomB := create(bob, &mautrix.ReqCreateRoom{Preset: "public_chat", Name: "B"})
	spaceT := create(bob, &mautrix.ReqCreateRoom{Preset: space.Preset, CreationContent: space.CreationContent, Name: "T"})
	roomC := create(bob, &mautrix.ReqCreateRoom{Preset: "public_chat", Name: "C"})
	child(bob, spaceT, roomC, "hs2.test")
	for _, r := range []mid.RoomID{roomA, roomP, roomR} {
		child(alice, spaceS, r, "hs1.test")
	}
	child(alice, spaceS, roomB, "hs2.test")
	child(alice, spaceS, spaceT, "hs2.test")

	names := func(cli *mautrix.Client, root mid.RoomID) string {
		t.Helper()
		resp, err := cli.Hierarchy(ctx, root, &mautrix.ReqHierarchy{})
		if err != nil {
			t.Fatalf("%s: /hierarchy: %v", cli.UserID, err)
		}
		var out []string
		for _, r := range resp.Rooms {
			out = append(out, r.Name)
		}
		sort.Strings(out)
		return strings.Join(out, " ")
	}
	// Alice's server is in S, A, P and R; B, T and C are described by
	// hs2 (C from T's answer).
	if got := names(alice, spaceS); got != "A B C P R S T" {
		t.Fatalf("alice sees %q", got)
	}
	// Bob joins the space: his server is in S, B, T and C; A and R are
	// described by hs1 (R because hs2 now has a member of S), P is not
	// (private: hs1 answers 404).
	if _, err := bob.JoinRoom(ctx, spaceS.String(), &mautrix.ReqJoinRoom{Via: []string{"hs1.test"}}); err != nil {
		t.Fatal(err)
	}
	if got := names(bob, spaceS); got != "A B C R S T" {
		t.Fatalf("bob sees %q", got)
	}
	// Dave, on the same server but not in the space, may not join R.
	if got := names(dave, spaceS); got != "A B C S T" {
		t.Fatalf("dave sees %q", got)
	}
	// hs1 answers hs2 about rooms it is in, and refuses a private one.
	var answer struct {
		Room struct {
			RoomID        string `json:"room_id"`
			RoomType      string `json:"room_type"`
			RoomVersion   string `json:"room_version"`
			ChildrenState []any  `json:"children_state"`
		} `json:"room"`
		Children     []map[string]any `json:"children"`
		Inaccessible []string         `json:"inaccessible_children"`
	}
	if err := hs2.Federation.Client().Do(ctx, "hs1.test", "GET", "/_matrix/federation/v1/hierarchy/"+url.PathEscape(spaceS.String()), nil, &answer); err != nil {
		t.Fatal(err)
	}
	var children []string
	for _, c := range answer.Children {
		children = append(children, fmt.Sprint(c["name"]))
	}
	sort.Strings(children)
	// B and T are hs2's rooms, which hs1 is not in: left out.
	if answer.Room.RoomID != spaceS.String() || answer.Room.RoomType != "m.space" || answer.Room.RoomVersion != "12" ||
		len(answer.Room.ChildrenState) != 5 || fmt.Sprint(children) != "[A R]" || fmt.Sprint(answer.Inaccessible) != "["+roomP.String()+"]" {
		t.Fatalf("hs1's answer about S: %+v", answer)
	}
	if err := hs2.Federation.Client().Do(ctx, "hs1.test", "GET", "/_matrix/federation/v1/hierarchy/"+url.PathEscape(roomP.String()), nil, nil); err == nil ||
		!strings.Contains(err.Error(), "M_NOT_FOUND") {
		t.Fatalf("a private room's hierarchy: %v", err)
	}
}

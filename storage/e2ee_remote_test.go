package storage

import (
	"context"
	"testing"
)

func TestDeviceListStreamIDs(t *testing.T) {
	ctx := context.Background()
	e2eEngines(t, func(t *testing.T, db *DB) {
		if id, err := db.DeviceListStreamID(ctx, "@a:hs"); err != nil || id != 0 {
			t.Fatalf("no updates yet: %d %v", id, err)
		}
		if last, err := db.NextDeviceListStreamIDs(ctx, "@a:hs", 1); err != nil || last != 1 {
			t.Fatalf("first: %d %v", last, err)
		}
		if last, err := db.NextDeviceListStreamIDs(ctx, "@a:hs", 3); err != nil || last != 4 {
			t.Fatalf("block of three: %d %v", last, err)
		}
		// Each user counts on their own.
		if last, err := db.NextDeviceListStreamIDs(ctx, "@b:hs", 1); err != nil || last != 1 {
			t.Fatalf("other user: %d %v", last, err)
		}
		if id, err := db.DeviceListStreamID(ctx, "@a:hs"); err != nil || id != 4 {
			t.Fatalf("latest: %d %v", id, err)
		}
	})
}

func TestRemoteDeviceListCache(t *testing.T) {
	ctx := context.Background()
	e2eEngines(t, func(t *testing.T, db *DB) {
		bob := "@bob:remote.test"
		get := func() *RemoteDeviceList {
			t.Helper()
			ls, err := db.RemoteDeviceLists(ctx, []string{bob, "@nobody:remote.test"})
			if err != nil {
				t.Fatal(err)
			}
			return ls[bob]
		}
		apply := func(u RemoteDeviceUpdate) RemoteUpdateResult {
			t.Helper()
			u.UserID = bob
			res, err := db.ApplyRemoteDeviceUpdate(ctx, u, 1)
			if err != nil {
				t.Fatal(err)
			}
			return res
		}
		// Nothing cached: every update asks for a resync.
		if res := apply(RemoteDeviceUpdate{DeviceID: "A", StreamID: 1}); res != RemoteUpdateNeedsResync {
			t.Fatalf("update without a list: %v", res)
		}
		if get() != nil {
			t.Fatal("an update created a list")
		}
		stored, err := db.ReplaceRemoteDeviceList(ctx, RemoteDeviceList{UserID: bob, StreamID: 5, MasterKey: `{"m":1}`,
			Devices: []RemoteDevice{{DeviceID: "A", DisplayName: "phone", KeyJSON: `{"a":1}`}, {DeviceID: "B"}}}, 1)
		if err != nil || !stored {
			t.Fatalf("resync: %v %v", stored, err)
		}
		if l := get(); l == nil || l.StreamID != 5 || l.Stale || len(l.Devices) != 2 || l.Devices[0].DisplayName != "phone" || l.MasterKey != `{"m":1}` {
			t.Fatalf("cached: %+v", l)
		}
		// In sequence: applied; again or older: duplicate.
		if res := apply(RemoteDeviceUpdate{DeviceID: "C", KeyJSON: `{"c":1}`, StreamID: 6, PrevIDs: []int64{5}}); res != RemoteUpdateApplied {
			t.Fatalf("next update: %v", res)
		}
		if res := apply(RemoteDeviceUpdate{DeviceID: "C", StreamID: 6, PrevIDs: []int64{5}}); res != RemoteUpdateDuplicate {
			t.Fatalf("same update again: %v", res)
		}
		if res := apply(RemoteDeviceUpdate{DeviceID: "B", Deleted: true, StreamID: 7, PrevIDs: []int64{6}}); res != RemoteUpdateApplied {
			t.Fatalf("deletion: %v", res)
		}
		if l := get(); l.StreamID != 7 || len(l.Devices) != 2 || l.Devices[1].DeviceID != "C" || l.Devices[1].KeyJSON != `{"c":1}` {
			t.Fatalf("after updates: %+v", l)
		}
		// A resync older than what was applied since is not stored.
		if stored, err := db.ReplaceRemoteDeviceList(ctx, RemoteDeviceList{UserID: bob, StreamID: 6}, 1); err != nil || stored {
			t.Fatalf("older resync stored: %v %v", stored, err)
		}
		// A gap: the list goes stale and stays so until resynced.
		if res := apply(RemoteDeviceUpdate{DeviceID: "D", StreamID: 10, PrevIDs: []int64{9}}); res != RemoteUpdateNeedsResync {
			t.Fatalf("gap: %v", res)
		}
		if res := apply(RemoteDeviceUpdate{DeviceID: "E", StreamID: 11, PrevIDs: []int64{7}}); res != RemoteUpdateNeedsResync {
			t.Fatalf("update of a stale list: %v", res)
		}
		if ok, err := db.SetRemoteCrossSigningKeys(ctx, bob, `{"m":2}`, "", 1); err != nil || ok {
			t.Fatalf("cross-signing keys of a stale list: %v %v", ok, err)
		}
		if l := get(); !l.Stale || l.StreamID != 7 {
			t.Fatalf("stale list: %+v", l)
		}
		if stored, err := db.ReplaceRemoteDeviceList(ctx, RemoteDeviceList{UserID: bob, StreamID: 3,
			Devices: []RemoteDevice{{DeviceID: "Z"}}}, 1); err != nil || !stored {
			t.Fatalf("resync of a stale list: %v %v", stored, err)
		}
		if l := get(); l.Stale || l.StreamID != 3 || len(l.Devices) != 1 || l.MasterKey != "" {
			t.Fatalf("resynced: %+v", l)
		}
		if ok, err := db.SetRemoteCrossSigningKeys(ctx, bob, `{"m":2}`, `{"s":2}`, 1); err != nil || !ok {
			t.Fatalf("cross-signing keys: %v %v", ok, err)
		}
		if ok, err := db.SetRemoteCrossSigningKeys(ctx, bob, "", `{"s":3}`, 1); err != nil || !ok {
			t.Fatalf("self-signing key only: %v %v", ok, err)
		}
		if l := get(); l.MasterKey != `{"m":2}` || l.SelfSigningKey != `{"s":3}` {
			t.Fatalf("cross-signing keys: %+v", l)
		}
		if err := db.MarkRemoteDeviceListsStale(ctx, bob); err != nil || !get().Stale {
			t.Fatalf("mark stale: %v", err)
		}
		if err := db.DropRemoteDeviceLists(ctx, bob); err != nil || get() != nil {
			t.Fatalf("drop: %v", err)
		}
	})
}

func TestSharingRoomsWithServer(t *testing.T) {
	ctx := context.Background()
	e2eEngines(t, func(t *testing.T, db *DB) {
		for _, m := range []Membership{
			{RoomID: "!r1:hs", UserID: "@alice:hs", Membership: "join"},
			{RoomID: "!r1:hs", UserID: "@bob:remote", Membership: "join"},
			{RoomID: "!r1:hs", UserID: "@carol:remote", Membership: "leave"},
			{RoomID: "!r2:hs", UserID: "@dave:remote", Membership: "join"},
			{RoomID: "!r2:hs", UserID: "@eve:hs", Membership: "invite"},
			// A server whose name only ends like ours does not count.
			{RoomID: "!r3:hs", UserID: "@frank:remote", Membership: "join"},
			{RoomID: "!r3:hs", UserID: "@mallory:evilhs", Membership: "join"},
		} {
			m.EventID, m.StreamPos = "$"+m.UserID, 1
			if err := SetMembership(ctx, db, m); err != nil {
				t.Fatal(err)
			}
		}
		got, err := db.SharingRoomsWithServer(ctx, "hs", []string{"@bob:remote", "@carol:remote", "@dave:remote", "@frank:remote"})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || !got["@bob:remote"] {
			t.Fatalf("sharing: %v", got)
		}
		if _, err := db.ReplaceRemoteDeviceList(ctx, RemoteDeviceList{UserID: "@bob:remote", StreamID: 1}, 1); err != nil {
			t.Fatal(err)
		}
		if users, err := db.CachedRemoteUsersInRoom(ctx, "!r1:hs"); err != nil || len(users) != 1 || users[0] != "@bob:remote" {
			t.Fatalf("cached users in room: %v %v", users, err)
		}
	})
}

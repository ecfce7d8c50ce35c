package authrules

import (
	"fmt"
	"testing"

	"github.com/parley-chat/parley/matrix/event"
)

// benchRoom is the standard room with a realistic power levels event and a
// few dozen members, so that lookups and content parsing cost what they
// would in a real room.
func benchRoom(b *testing.B, ver event.RoomVersion, joinRule string) *room {
	levels := map[string]any{
		"users":          map[string]any{alice: 100, bob: 50},
		"events":         map[string]any{"m.room.name": 50, "m.room.power_levels": 100, "m.room.history_visibility": 100, "m.room.tombstone": 150},
		"events_default": 0, "state_default": 50, "ban": 50, "kick": 50, "redact": 50, "invite": 0,
		"notifications": map[string]any{"room": 50},
	}
	r := newRoom(b, ver, withJoinRule(joinRule), withPowerLevels(levels))
	for i := 0; i < 50; i++ {
		u := fmt.Sprintf("@member%d:a.test", i)
		r.member(u, u, membershipJoin, map[string]any{"displayname": u})
	}
	return r
}

func BenchmarkAllowedMessage(b *testing.B) {
	for _, ver := range []event.RoomVersion{"4", "10", "12"} {
		b.Run("v"+string(ver), func(b *testing.B) {
			r := benchRoom(b, ver, joinRuleInvite)
			ev := message(carol)(r)
			b.ReportAllocs()
			for b.Loop() {
				if err := Allowed(ev, r.state); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkAllowedJoin(b *testing.B) {
	for _, ver := range []event.RoomVersion{"4", "10", "12"} {
		b.Run("public/v"+string(ver), func(b *testing.B) {
			r := benchRoom(b, ver, joinRulePublic)
			ev := memberEvent(dave, dave, membershipJoin, map[string]any{"displayname": "Dave"})(r)
			b.ReportAllocs()
			for b.Loop() {
				if err := Allowed(ev, r.state); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	for _, ver := range []event.RoomVersion{"10", "12"} {
		b.Run("restricted/v"+string(ver), func(b *testing.B) {
			r := benchRoom(b, ver, joinRuleRestricted)
			ev := memberEvent(dave, dave, membershipJoin, map[string]any{"join_authorised_via_users_server": bob})(r)
			b.ReportAllocs()
			for b.Loop() {
				if err := Allowed(ev, r.state); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkAllowedPowerLevels measures the heaviest common case: a power
// levels change, which parses two power levels contents.
func BenchmarkAllowedPowerLevels(b *testing.B) {
	r := benchRoom(b, "12", joinRuleInvite)
	ev := powerLevelsEvent(alice, map[string]any{
		"users":  map[string]any{bob: 50, carol: 10},
		"events": map[string]any{"m.room.name": 50, "m.room.power_levels": 100, "m.room.history_visibility": 100, "m.room.tombstone": 150},
		"ban":    50, "kick": 50, "redact": 50, "invite": 0, "state_default": 50, "events_default": 0,
		"notifications": map[string]any{"room": 50},
	})(r)
	b.ReportAllocs()
	for b.Loop() {
		if err := Allowed(ev, r.state); err != nil {
			b.Fatal(err)
		}
	}
}

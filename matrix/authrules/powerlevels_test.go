package authrules

import (
	"encoding/json"
	"errors"
	"math"
	"testing"

	"github.com/parley-chat/parley/matrix/event"
)

func TestParseLevel(t *testing.T) {
	const bad = math.MinInt64 + 1 // marks "refused"
	cases := []struct {
		raw                       string
		v1to5, v6to9, v10andLater int64
	}{
		{`50`, 50, 50, 50},
		{`-5`, -5, -5, -5},
		{`0`, 0, 0, 0},
		{`9007199254740991`, 9007199254740991, 9007199254740991, 9007199254740991},
		{`9007199254740992`, 9007199254740992, bad, bad},
		{`99999999999999999999999`, math.MaxInt64, bad, bad},
		{`-99999999999999999999999`, math.MinInt64, bad, bad},
		{`"50"`, 50, 50, bad},
		{`"000100"`, 100, 100, bad},
		{`"+100"`, 100, 100, bad},
		{`"-100"`, -100, -100, bad},
		{`" 00100 "`, 100, 100, bad},
		{`"\t-7\n"`, -7, -7, bad},
		{`"99999999999999999999999"`, math.MaxInt64, math.MaxInt64, bad},
		{`"1.5"`, bad, bad, bad},
		{`"1e2"`, bad, bad, bad},
		{`"+-1"`, bad, bad, bad},
		{`""`, bad, bad, bad},
		{`"abc"`, bad, bad, bad},
		{`50.57`, 50, bad, bad},
		{`-50.57`, -50, bad, bad},
		{`0.999`, 0, bad, bad},
		{`5.114698E4`, 51146, bad, bad},
		{`5114698e-2`, 51146, bad, bad},
		{`1e400`, bad, bad, bad},
		{`1e-400`, 0, bad, bad},
		{`true`, bad, bad, bad},
		{`null`, bad, bad, bad},
		{`{}`, bad, bad, bad},
		{`[1]`, bad, bad, bad},
	}
	for _, c := range cases {
		for _, ver := range allVersions() {
			v, _ := ver.Info()
			want := c.v10andLater
			switch {
			case !v.StrictCanonicalJSON:
				want = c.v1to5
			case !v.IntegerPowerLevels:
				want = c.v6to9
			}
			got, err := parseLevel(json.RawMessage(c.raw), v)
			if want == bad {
				if err == nil {
					t.Errorf("v%s %s: got %d, want refused", ver, c.raw, got)
				}
				continue
			}
			if err != nil || got != want {
				t.Errorf("v%s %s: got %d, %v, want %d", ver, c.raw, got, err, want)
			}
		}
	}
}

func TestPowerLevelsDefaults(t *testing.T) {
	for _, ver := range allVersions() {
		t.Run("v"+string(ver), func(t *testing.T) {
			r := newRoom(t, ver, withPowerLevels(map[string]any{}))
			p, err := NewPowerLevels(r.create, r.state.Get(typePowerLevels, ""))
			if err != nil {
				t.Fatal(err)
			}
			got := []int64{p.BanLevel(), p.KickLevel(), p.InviteLevel(), p.RedactLevel(), p.StateDefault(), p.EventsDefault(), p.UsersDefault()}
			want := []int64{50, 50, 0, 50, 50, 0, 0}
			for i := range want {
				if got[i] != want[i] {
					t.Errorf("levels %v, want %v", got, want)
					break
				}
			}
			if l := p.EventLevel("m.room.name", true); l != 50 {
				t.Errorf("state event level %d, want 50", l)
			}
			if l := p.EventLevel("m.room.message", false); l != 0 {
				t.Errorf("message level %d, want 0", l)
			}
			if l, ok := p.NotificationLevel("room"); !ok || l != 50 {
				t.Errorf("room notification level %d %v, want 50", l, ok)
			}
			if _, ok := p.NotificationLevel("other"); ok {
				t.Error("unknown notification key has a level")
			}
			if l := p.UserLevel(carol); l != 0 {
				t.Errorf("carol level %d, want 0", l)
			}
			wantAlice := int64(0) // an empty power levels event gives the creator nothing
			if r.info.PrivilegedCreators {
				wantAlice = CreatorPowerLevel
			}
			if l := p.UserLevel(alice); l != wantAlice {
				t.Errorf("alice level %d, want %d", l, wantAlice)
			}
		})
	}
}

func TestPowerLevelsWithoutEvent(t *testing.T) {
	for _, ver := range allVersions() {
		t.Run("v"+string(ver), func(t *testing.T) {
			r := newRoom(t, ver, withPowerLevels(nil), withCreate(map[string]any{"creator": frank, "additional_creators": []any{dave}}))
			p, err := NewPowerLevels(r.create, nil)
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]int64{alice: 0, frank: 100, dave: 0, carol: 0}
			switch {
			case r.info.PrivilegedCreators:
				want = map[string]int64{alice: CreatorPowerLevel, frank: 0, dave: CreatorPowerLevel, carol: 0}
			case r.info.CreatorFromSender:
				want = map[string]int64{alice: 100, frank: 0, dave: 0, carol: 0}
			}
			for u, l := range want {
				if got := p.UserLevel(u); got != l {
					t.Errorf("%s: level %d, want %d", u, got, l)
				}
			}
			if got := p.IsPrivilegedCreator(dave); got != r.info.PrivilegedCreators {
				t.Errorf("dave privileged: %v", got)
			}
			if r.info.PrivilegedCreators {
				if c := p.Creators(); len(c) != 2 || c[0] != alice || c[1] != dave {
					t.Errorf("creators %v", c)
				}
			} else if c := p.Creators(); c != nil {
				t.Errorf("creators %v before v12", c)
			}
			if p.StateDefault() != 50 || p.BanLevel() != 50 {
				t.Errorf("defaults without an event: state %d ban %d", p.StateDefault(), p.BanLevel())
			}
		})
	}
}

func TestPowerLevelsValues(t *testing.T) {
	content := map[string]any{
		"ban": 70, "kick": "60", "invite": 5, "redact": 40,
		"events_default": 1, "state_default": 2, "users_default": 3,
		"events":        map[string]any{"m.room.name": 9, "m.room.topic": "8"},
		"notifications": map[string]any{"room": 20, "custom": "21"},
		"users":         map[string]any{bob: 42, carol: "43", "bad": 1},
	}
	for _, ver := range allVersions() {
		t.Run("v"+string(ver), func(t *testing.T) {
			r := newRoom(t, ver, withPowerLevels(content))
			p, err := NewPowerLevels(r.create, r.state.Get(typePowerLevels, ""))
			if err != nil {
				t.Fatal(err)
			}
			stringy := !r.info.IntegerPowerLevels
			pick := func(ifString, otherwise int64) int64 {
				if stringy {
					return ifString
				}
				return otherwise
			}
			checks := []struct {
				name      string
				got, want int64
			}{
				{"ban", p.BanLevel(), 70},
				{"kick (string)", p.KickLevel(), pick(60, 50)},
				{"invite", p.InviteLevel(), 5},
				{"redact", p.RedactLevel(), 40},
				{"events_default", p.EventsDefault(), 1},
				{"state_default", p.StateDefault(), 2},
				{"users_default", p.UsersDefault(), 3},
				{"m.room.name", p.EventLevel("m.room.name", true), 9},
				{"m.room.topic (string)", p.EventLevel("m.room.topic", true), pick(8, 2)},
				{"other state", p.EventLevel("x", true), 2},
				{"other message", p.EventLevel("x", false), 1},
				{"bob", p.UserLevel(bob), 42},
				{"carol (string)", p.UserLevel(carol), pick(43, 3)},
				{"dave (default)", p.UserLevel(dave), 3},
			}
			for _, c := range checks {
				if c.got != c.want {
					t.Errorf("%s: %d, want %d", c.name, c.got, c.want)
				}
			}
			if l, _ := p.NotificationLevel("room"); l != 20 {
				t.Errorf("room notification %d", l)
			}
			if l, ok := p.NotificationLevel("custom"); ok != stringy || (ok && l != 21) {
				t.Errorf("custom notification %d %v", l, ok)
			}
		})
	}
}

func TestValidatePowerLevelsContent(t *testing.T) {
	cases := []struct {
		name      string
		content   string
		auth      verdict // ValidatePowerLevelsContent accepts
		ownEvents bool    // StrictPowerLevelsContent accepts
	}{
		{"integers", `{"ban":50,"users":{"@a:x.test":100},"events":{"m.x":1},"notifications":{"room":5}}`, allow, true},
		{"empty", `{}`, allow, true},
		{"string level", `{"ban":"50"}`, stringyLevels, false},
		{"string users value", `{"users":{"@a:x.test":"100"}}`, stringyLevels, false},
		{"malformed level", `{"ban":"x"}`, stringyLevels, false},
		{"null level", `{"ban":null}`, stringyLevels, false},
		{"events not an object", `{"events":[]}`, stringyLevels, false},
		{"float level", `{"ban":1.5}`, stringyLevels, false},
		{"users key not a user ID", `{"users":{"a":1}}`, reject, false},
		{"users value malformed", `{"users":{"@a:x.test":true}}`, reject, false},
		{"users null", `{"users":null}`, reject, false},
		{"level beyond canonical JSON", `{"ban":9007199254740992}`, not(func(v event.RoomVersionInfo) bool { return v.IntegerPowerLevels }), false},
	}
	for _, c := range cases {
		for _, ver := range allVersions() {
			v, _ := ver.Info()
			err := ValidatePowerLevelsContent(json.RawMessage(c.content), v)
			if (err == nil) != c.auth(v) {
				t.Errorf("%s v%s: ValidatePowerLevelsContent = %v", c.name, ver, err)
			}
			if err != nil && !errors.Is(err, ErrNotAllowed) {
				t.Errorf("%s: error does not wrap ErrNotAllowed", c.name)
			}
			if err := StrictPowerLevelsContent(json.RawMessage(c.content), v); (err == nil) != c.ownEvents {
				t.Errorf("%s v%s: StrictPowerLevelsContent = %v", c.name, ver, err)
			}
		}
	}
}

func TestNewPowerLevelsNeedsCreate(t *testing.T) {
	if _, err := NewPowerLevels(nil, nil); err == nil {
		t.Error("no error without a create event")
	}
}

// An unchecked create event must not break reading power levels.
func TestPowerLevelsOddCreateContent(t *testing.T) {
	r := newEmptyRoom(t, event.RoomVersion("12"))
	r.addCreate(alice, map[string]any{"additional_creators": []any{5, bob}})
	p, err := NewPowerLevels(r.create, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !p.IsPrivilegedCreator(bob) || p.IsPrivilegedCreator("5") {
		t.Errorf("creators %v", p.Creators())
	}
}

package stateres

import (
	"encoding/json"
	"math"
	"strconv"
	"strings"

	"github.com/parley-chat/parley/matrix/event"
)

// creatorPower stands for the infinite power level that room version 12
// gives room creators: greater than any level a power_levels event can hold.
const creatorPower = math.MaxInt64

// powerLevels is the part of an m.room.power_levels content that the
// orderings read: the users' levels.
type powerLevels struct {
	users        map[string]int64
	usersDefault int64
}

func (p *powerLevels) userLevel(user string) int64 {
	if l, ok := p.users[user]; ok {
		return l
	}
	return p.usersDefault
}

// parsePowerLevels reads users and users_default. Values the room version
// does not accept are ignored rather than failing the resolution: an event
// that carried them could not have passed the auth rules, and the ordering
// only needs a deterministic number.
func parsePowerLevels(content json.RawMessage, v event.RoomVersionInfo) *powerLevels {
	var c struct {
		Users        map[string]json.RawMessage `json:"users"`
		UsersDefault json.RawMessage            `json:"users_default"`
	}
	p := &powerLevels{}
	if err := json.Unmarshal(content, &c); err != nil {
		// Try the two keys on their own, so that one malformed key does not
		// hide the other.
		var loose map[string]json.RawMessage
		_ = json.Unmarshal(content, &loose)
		c.UsersDefault = loose["users_default"]
		_ = json.Unmarshal(loose["users"], &c.Users)
	}
	if l, ok := powerValue(c.UsersDefault, v); ok {
		p.usersDefault = l
	}
	if len(c.Users) > 0 {
		p.users = make(map[string]int64, len(c.Users))
		for u, raw := range c.Users {
			if l, ok := powerValue(raw, v); ok {
				p.users[u] = l
			}
		}
	}
	return p
}

// powerValue parses one power level. Room versions 1 to 9 also accept
// integers written as strings, and versions 1 to 5 floats, which are
// truncated (rooms/v1 "m.room.power_levels events accept values as strings"
// and "... as floats"); version 10 on accepts JSON integers only.
func powerValue(raw json.RawMessage, v event.RoomVersionInfo) (int64, bool) {
	if len(raw) == 0 {
		return 0, false
	}
	if raw[0] == '"' {
		if v.IntegerPowerLevels {
			return 0, false
		}
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return 0, false
		}
		s = strings.TrimSpace(s)
		digits := strings.TrimLeft(s, "+-")
		if len(s)-len(digits) > 1 || digits == "" || strings.Trim(digits, "0123456789") != "" {
			return 0, false
		}
		n, err := strconv.ParseInt(s, 10, 64)
		return n, err == nil
	}
	if n, err := strconv.ParseInt(string(raw), 10, 64); err == nil {
		return n, true
	}
	if v.IntegerPowerLevels {
		return 0, false
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) || f >= math.MaxInt64 || f <= math.MinInt64 {
		return 0, false
	}
	return int64(f), true
}

// powerLevelsOf returns the parsed content of a power levels node, parsing it
// once per resolution.
func (g *graph) powerLevelsOf(i int32) *powerLevels {
	n := &g.nodes[i]
	if n.pl == nil {
		n.pl = parsePowerLevels(n.ev.Content(), g.version)
	}
	return n.pl
}

// creators returns the room creators named by a create event: its sender
// from room version 11 on (plus additional_creators in version 12),
// content.creator before.
func creators(create *event.Event, v event.RoomVersionInfo) []string {
	if !v.CreatorFromSender {
		var c struct {
			Creator string `json:"creator"`
		}
		_ = json.Unmarshal(create.Content(), &c)
		return []string{c.Creator}
	}
	out := []string{create.Sender()}
	if v.PrivilegedCreators {
		var c struct {
			AdditionalCreators []json.RawMessage `json:"additional_creators"`
		}
		_ = json.Unmarshal(create.Content(), &c)
		for _, raw := range c.AdditionalCreators {
			var u string
			if json.Unmarshal(raw, &u) == nil {
				out = append(out, u)
			}
		}
	}
	return out
}

// senderPower is the power level of the event's sender "when looking at
// their respective auth_events", the first tie-break of the reverse
// topological power ordering. It follows the auth rules: the level from the
// cited power levels event (users, then users_default, then 0); with none,
// 100 for the room creator and 0 for others; in room version 12 creators
// are infinitely powerful whatever the power levels say.
func (g *graph) senderPower(i int32) (int64, error) {
	n := &g.nodes[i]
	if n.flags&flagPowerKnown != 0 {
		return n.power, nil
	}
	sender := n.ev.Sender()
	level, err := func() (int64, error) {
		create, err := g.authEventOf(i, "m.room.create", "", false)
		if err != nil {
			return 0, err
		}
		isCreator := false
		if create >= 0 {
			for _, c := range creators(g.ev(create), g.version) {
				if c == sender {
					isCreator = true
				}
			}
		}
		if isCreator && g.version.PrivilegedCreators {
			return creatorPower, nil
		}
		pl, err := g.authEventOf(i, "m.room.power_levels", "", false)
		if err != nil {
			return 0, err
		}
		if pl >= 0 {
			return g.powerLevelsOf(pl).userLevel(sender), nil
		}
		if isCreator {
			return 100, nil
		}
		return 0, nil
	}()
	if err != nil {
		return 0, err
	}
	n = &g.nodes[i] // authEventOf may have grown g.nodes
	n.power = level
	n.flags |= flagPowerKnown
	return level, nil
}

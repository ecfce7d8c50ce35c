package push

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/parley-chat/parley/homeserver/filter"
	"github.com/parley-chat/parley/matrix/authrules"
	"github.com/parley-chat/parley/matrix/event"
)

// The evaluation works on rules compiled once per user (and cached until
// the user changes them) against an event prepared once for all of the
// room's members:
//
//   - every condition that does not depend on who owns the rule (the type
//     is m.room.message, the sender may notify the room...) is interned:
//     all users' copies of it share one index, and its outcome is computed
//     once per event and remembered in a small array, so that 500 members
//     with the default rules cost 500 array look-ups, not 500 glob matches;
//   - property paths are interned the same way, so the event's content is
//     decoded once and each path walked once per event;
//   - the room's member count, display names and power levels come from a
//     RoomContext built once per room and kept until its state changes.

// condition kinds, compiled.
const (
	ckEventMatch uint8 = iota
	ckPropertyIs
	ckPropertyContains
	ckDisplayName
	ckMemberCount
	ckSenderPermission
	ckRoomIs   // the implied condition of room rules
	ckSenderIs // the implied condition of sender rules
	ckNever    // unknown or malformed conditions never match
)

// compiledCond is one condition ready to evaluate.
type compiledCond struct {
	kind uint8
	// memo is the interned index of the condition's outcome, or -1 when
	// the outcome depends on the rule's owner and is not shared.
	memo int
	// path is the interned index of the property path, or -1.
	path int
	// body: the key is content.body, matched word by word.
	body   bool
	glob   *glob
	scalar scalar
	cmp    string
	n      int64
	str    string // room ID, sender, or notification key
}

// compiledRule is one enabled rule.
type compiledRule struct {
	conds   []*compiledCond
	outcome *Outcome
}

// Outcome is what a matching rule asks for.
type Outcome struct {
	// RuleID is the rule that matched.
	RuleID string
	// Actions are the rule's actions as stored, and ActionsJSON the same
	// marshalled once, for the notifications table.
	Actions     []json.RawMessage
	ActionsJSON []byte
	// Notify is set by the notify action; Highlight by the highlight tweak.
	Notify, Highlight bool
	// Tweaks are the set_tweak values, for the push gateway.
	Tweaks map[string]json.RawMessage
}

// compiledRules is one user's enabled rules, in priority order. Room and
// sender rules are looked up by ID: at most one of each can match.
type compiledRules struct {
	userID string
	// ignored are the users the owner ignores, and loaded when the rules
	// and ignore list were read (both are kept by the service's cache).
	ignored   map[string]bool
	loaded    time.Time
	override  []*compiledRule
	content   []*compiledRule
	room      map[string]*compiledRule
	sender    map[string]*compiledRule
	underride []*compiledRule
}

// Evaluator compiles rules and evaluates events. Compiled rules of all
// users share its intern tables; it is safe for concurrent use.
type Evaluator struct {
	mu    sync.Mutex
	conds map[string]int // interned condition key -> memo index
	paths map[string]int // dotted path -> index
	split [][]string     // index -> split path
	// outcomes interns outcomes by their actions, so that all users'
	// copies of a default rule share one.
	outcomes map[string]*Outcome
	nConds   int
}

// NewEvaluator returns an evaluator with empty intern tables.
func NewEvaluator() *Evaluator {
	ev := &Evaluator{conds: map[string]int{}, paths: map[string]int{}, outcomes: map[string]*Outcome{}}
	ev.internPath("content.body") // bodyPath
	return ev
}

func (ev *Evaluator) internPath(key string) int {
	if i, ok := ev.paths[key]; ok {
		return i
	}
	i := len(ev.split)
	ev.paths[key] = i
	ev.split = append(ev.split, filter.SplitPath(key))
	return i
}

func (ev *Evaluator) internCond(key string) int {
	if i, ok := ev.conds[key]; ok {
		return i
	}
	i := ev.nConds
	ev.conds[key] = i
	ev.nConds++
	return i
}

func (ev *Evaluator) internOutcome(ruleID string, actions []json.RawMessage) *Outcome {
	raw, _ := json.Marshal(actions)
	key := ruleID + "\x00" + string(raw)
	if o, ok := ev.outcomes[key]; ok {
		return o
	}
	o := &Outcome{RuleID: ruleID, Actions: actions, ActionsJSON: raw}
	for _, a := range actions {
		if bytes.Equal(a, []byte(`"notify"`)) {
			o.Notify = true
			continue
		}
		var t struct {
			SetTweak string          `json:"set_tweak"`
			Value    json.RawMessage `json:"value"`
		}
		if json.Unmarshal(a, &t) != nil || t.SetTweak == "" {
			continue
		}
		if o.Tweaks == nil {
			o.Tweaks = map[string]json.RawMessage{}
		}
		if len(t.Value) == 0 {
			// A tweak without a value means true (the spec says so of
			// highlight, the only tweak defined without one).
			t.Value = json.RawMessage("true")
		}
		if t.SetTweak == "highlight" {
			o.Highlight = bytes.Equal(t.Value, []byte("true"))
		}
		o.Tweaks[t.SetTweak] = t.Value
	}
	if len(ev.outcomes) < 100000 {
		ev.outcomes[key] = o
	}
	return o
}

// Compile turns a user's effective rule set into the form Evaluate uses.
// Disabled rules are left out.
func (ev *Evaluator) Compile(userID string, rs *Ruleset) *compiledRules {
	ev.mu.Lock()
	defer ev.mu.Unlock()
	out := &compiledRules{userID: userID, room: map[string]*compiledRule{}, sender: map[string]*compiledRule{}}
	for _, k := range Kinds {
		for _, r := range *rs.List(k) {
			if !r.Enabled {
				continue
			}
			cr := &compiledRule{outcome: ev.internOutcome(r.RuleID, r.Actions)}
			switch k {
			case KindOverride, KindUnderride:
				for _, c := range r.Conditions {
					cr.conds = append(cr.conds, ev.compileCond(userID, c))
				}
			case KindContent:
				pattern := ""
				if r.Pattern != nil {
					pattern = *r.Pattern
				} else {
					continue // a content rule without a pattern cannot match
				}
				p := pattern
				cr.conds = []*compiledCond{ev.compileCond(userID, Condition{Kind: CondEventMatch, Key: "content.body", Pattern: &p})}
			case KindRoom:
				cr.conds = []*compiledCond{{kind: ckRoomIs, memo: -1, path: -1, str: r.RuleID}}
			case KindSender:
				cr.conds = []*compiledCond{{kind: ckSenderIs, memo: -1, path: -1, str: r.RuleID}}
			}
			switch k {
			case KindOverride:
				out.override = append(out.override, cr)
			case KindContent:
				out.content = append(out.content, cr)
			case KindRoom:
				if _, dup := out.room[r.RuleID]; !dup {
					out.room[r.RuleID] = cr
				}
			case KindSender:
				if _, dup := out.sender[r.RuleID]; !dup {
					out.sender[r.RuleID] = cr
				}
			case KindUnderride:
				out.underride = append(out.underride, cr)
			}
		}
	}
	return out
}

// compileCond compiles one condition; ev.mu is held.
func (ev *Evaluator) compileCond(owner string, c Condition) *compiledCond {
	cc := &compiledCond{memo: -1, path: -1}
	shared := true
	switch c.Kind {
	case CondEventMatch:
		if c.Key == "" || c.Pattern == nil {
			cc.kind = ckNever
			break
		}
		cc.kind = ckEventMatch
		cc.path = ev.internPath(c.Key)
		cc.body = c.Key == "content.body"
		cc.glob = compileGlob(*c.Pattern)
		// Patterns naming the owner (the default invite rule) are the
		// same condition for no two users: interning them would only
		// grow the table.
		shared = *c.Pattern != owner
	case CondEventPropertyIs, CondEventPropertyContains:
		s, ok := parseScalar(c.Value)
		if c.Key == "" || !ok {
			cc.kind = ckNever
			break
		}
		cc.kind = ckPropertyIs
		if c.Kind == CondEventPropertyContains {
			cc.kind = ckPropertyContains
		}
		cc.path = ev.internPath(c.Key)
		cc.scalar = s
		shared = !(s.kind == scalarString && s.s == owner)
	case CondContainsDisplayName:
		cc.kind = ckDisplayName
		shared = false // the owner's own display name
	case CondRoomMemberCount:
		cmp, n, ok := parseIs(c.Is)
		if !ok {
			cc.kind = ckNever
			break
		}
		cc.kind, cc.cmp, cc.n = ckMemberCount, cmp, n
	case CondSenderNotificationPermission:
		if c.Key == "" {
			cc.kind = ckNever
			break
		}
		cc.kind, cc.str = ckSenderPermission, c.Key
	default:
		cc.kind = ckNever
	}
	if shared && cc.kind != ckNever {
		key, _ := json.Marshal(c)
		cc.memo = ev.internCond(string(key))
	}
	return cc
}

// Evaluate returns the outcome of the first matching rule of rules for the
// prepared event, or nil when no rule matches. The caller must not
// evaluate an event for its own sender.
func (ev *Evaluator) Evaluate(p *Prepared, rules *compiledRules) *Outcome {
	for _, r := range rules.override {
		if p.matches(r, rules.userID) {
			return r.outcome
		}
	}
	for _, r := range rules.content {
		if p.matches(r, rules.userID) {
			return r.outcome
		}
	}
	if r := rules.room[p.roomID]; r != nil {
		return r.outcome
	}
	if r := rules.sender[p.sender]; r != nil {
		return r.outcome
	}
	for _, r := range rules.underride {
		if p.matches(r, rules.userID) {
			return r.outcome
		}
	}
	return nil
}

// RoomContext is what conditions need to know about a room: built once
// per room and reused for every event until the room's state changes.
type RoomContext struct {
	// MemberCount is the number of joined members.
	MemberCount int
	// DisplayNames maps joined members to their display names in the room.
	DisplayNames map[string]string
	// Power is the room's power levels; nil when unknown.
	Power *authrules.PowerLevels
}

// Prepared is an event made ready for evaluation against many users'
// rules: its content decoded once, condition outcomes and property values
// remembered as they are computed. A Prepared is used by one goroutine.
type Prepared struct {
	e        *Evaluator
	ev       *event.Event
	room     *RoomContext
	roomID   string
	sender   string
	content  map[string]any
	full     map[string]any // the whole event, decoded on first need
	memo     []uint8        // per interned condition: 0 unknown, 1 false, 2 true
	vals     []propVal      // per interned path
	split    [][]string
	senderPL *int64
}

type propVal struct {
	state uint8 // 0 unknown, 1 absent, 2 present
	v     any
	lower string // lower-cased string value, for body matching
}

// Prepare makes an event ready for evaluation in room.
func (ev *Evaluator) Prepare(e *event.Event, room *RoomContext) *Prepared {
	ev.mu.Lock()
	n, split := ev.nConds, ev.split
	ev.mu.Unlock()
	p := &Prepared{e: ev, ev: e, room: room, roomID: e.RoomID(), sender: e.Sender(),
		memo: make([]uint8, n), vals: make([]propVal, len(split)), split: split}
	dec := json.NewDecoder(bytes.NewReader(e.Content()))
	dec.UseNumber()
	_ = dec.Decode(&p.content) // malformed content simply matches nothing
	return p
}

func (p *Prepared) matches(r *compiledRule, owner string) bool {
	for _, c := range r.conds {
		if !p.cond(c, owner) {
			return false
		}
	}
	return true
}

// cond evaluates one condition, through the memo when it is shared.
func (p *Prepared) cond(c *compiledCond, owner string) bool {
	if c.memo >= 0 && c.memo < len(p.memo) {
		switch p.memo[c.memo] {
		case 1:
			return false
		case 2:
			return true
		}
		ok := p.eval(c, owner)
		p.memo[c.memo] = 1
		if ok {
			p.memo[c.memo] = 2
		}
		return ok
	}
	return p.eval(c, owner)
}

func (p *Prepared) eval(c *compiledCond, owner string) bool {
	switch c.kind {
	case ckEventMatch:
		pv := p.value(c.path)
		s, ok := pv.v.(string)
		if pv.state != 2 || !ok {
			return false
		}
		if c.body {
			if pv.lower == "" && s != "" {
				pv.lower = strings.ToLower(s)
			}
			return c.glob.matchWords(s, pv.lower)
		}
		return c.glob.matchWhole(s)
	case ckPropertyIs:
		pv := p.value(c.path)
		return pv.state == 2 && c.scalar.equals(pv.v)
	case ckPropertyContains:
		pv := p.value(c.path)
		arr, ok := pv.v.([]any)
		if pv.state != 2 || !ok {
			return false
		}
		for _, v := range arr {
			if c.scalar.equals(v) {
				return true
			}
		}
		return false
	case ckDisplayName:
		name := ""
		if p.room != nil {
			name = p.room.DisplayNames[owner]
		}
		if name == "" {
			return false
		}
		pv := p.value(bodyPath)
		s, ok := pv.v.(string)
		if pv.state != 2 || !ok {
			return false
		}
		if pv.lower == "" {
			pv.lower = strings.ToLower(s)
		}
		return containsWord(pv.lower, strings.ToLower(name))
	case ckMemberCount:
		if p.room == nil {
			return false
		}
		return compare(int64(p.room.MemberCount), c.cmp, c.n)
	case ckSenderPermission:
		if p.room == nil || p.room.Power == nil {
			return false
		}
		need, ok := p.room.Power.NotificationLevel(c.str)
		if !ok {
			need = 50 // the spec's default for notification levels
		}
		if p.senderPL == nil {
			l := p.room.Power.UserLevel(p.sender)
			p.senderPL = &l
		}
		return *p.senderPL >= need
	case ckRoomIs:
		return p.roomID == c.str
	case ckSenderIs:
		return p.sender == c.str
	}
	return false
}

// value returns the property at interned path i, looked up once per
// event.
func (p *Prepared) value(i int) *propVal {
	if i >= len(p.vals) {
		// A path interned after this event was prepared (a user's rules
		// compiled meanwhile): look it up without remembering.
		return p.lookupInto(&propVal{}, p.pathAt(i))
	}
	pv := &p.vals[i]
	if pv.state == 0 {
		p.lookupInto(pv, p.pathAt(i))
	}
	return pv
}

func (p *Prepared) pathAt(i int) []string {
	if i < len(p.split) {
		return p.split[i]
	}
	// Interned after Prepare: the evaluator's table has it.
	p.e.mu.Lock()
	defer p.e.mu.Unlock()
	if i < len(p.e.split) {
		return p.e.split[i]
	}
	return nil
}

// bodyPath is the interned index of content.body, which every evaluator
// interns first: contains_display_name reads it too.
const bodyPath = 0

func (p *Prepared) lookupInto(pv *propVal, path []string) *propVal {
	pv.state = 1
	if len(path) == 0 {
		return pv
	}
	var root any
	switch {
	case path[0] == "content":
		if p.content == nil {
			return pv
		}
		root = p.content
		path = path[1:]
	case len(path) == 1 && path[0] == "type":
		pv.state, pv.v = 2, p.ev.Type()
		return pv
	case len(path) == 1 && path[0] == "sender":
		pv.state, pv.v = 2, p.sender
		return pv
	case len(path) == 1 && path[0] == "room_id":
		pv.state, pv.v = 2, p.roomID
		return pv
	case len(path) == 1 && path[0] == "event_id":
		pv.state, pv.v = 2, p.ev.EventID()
		return pv
	case len(path) == 1 && path[0] == "state_key":
		if sk := p.ev.StateKey(); sk != nil {
			pv.state, pv.v = 2, *sk
		}
		return pv
	default:
		if p.full == nil {
			dec := json.NewDecoder(bytes.NewReader(p.ev.JSON()))
			dec.UseNumber()
			if dec.Decode(&p.full) != nil || p.full == nil {
				p.full = map[string]any{}
			}
		}
		root = p.full
	}
	v := root
	for _, name := range path {
		obj, ok := v.(map[string]any)
		if !ok {
			return pv
		}
		if v, ok = obj[name]; !ok {
			return pv
		}
	}
	pv.state, pv.v = 2, v
	return pv
}

// scalar is a non-compound canonical JSON value.
type scalar struct {
	kind uint8
	s    string
	i    int64
	b    bool
}

const (
	scalarString uint8 = iota + 1
	scalarInt
	scalarBool
	scalarNull
)

// maxSafeInt is the largest integer canonical JSON allows (2^53 - 1).
const maxSafeInt = 1<<53 - 1

// parseScalar reads a condition value: a string, an integer in the
// canonical JSON range, a boolean or null.
func parseScalar(raw json.RawMessage) (scalar, bool) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return scalar{}, false
	}
	switch raw[0] {
	case '"':
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return scalar{}, false
		}
		return scalar{kind: scalarString, s: s}, true
	case 't', 'f':
		var b bool
		if json.Unmarshal(raw, &b) != nil {
			return scalar{}, false
		}
		return scalar{kind: scalarBool, b: b}, true
	case 'n':
		if string(raw) != "null" {
			return scalar{}, false
		}
		return scalar{kind: scalarNull}, true
	}
	i, ok := parseInt(string(raw))
	if !ok {
		return scalar{}, false
	}
	return scalar{kind: scalarInt, i: i}, true
}

func parseInt(s string) (int64, bool) {
	i, err := strconv.ParseInt(s, 10, 64)
	if err != nil || i > maxSafeInt || i < -maxSafeInt {
		return 0, false
	}
	return i, true
}

// equals compares the scalar with a value decoded with UseNumber. Types are
// never converted: "true" is not true and 1 is not "1".
func (s scalar) equals(v any) bool {
	switch s.kind {
	case scalarString:
		x, ok := v.(string)
		return ok && x == s.s
	case scalarInt:
		n, ok := v.(json.Number)
		if !ok {
			return false
		}
		i, ok := parseInt(n.String())
		return ok && i == s.i
	case scalarBool:
		x, ok := v.(bool)
		return ok && x == s.b
	case scalarNull:
		return v == nil
	}
	return false
}

// parseIs reads a room_member_count "is" parameter: a decimal integer,
// optionally prefixed by ==, <, >, >= or <=.
func parseIs(is string) (string, int64, bool) {
	cmp := "=="
	for _, op := range []string{"==", ">=", "<=", "<", ">"} {
		if strings.HasPrefix(is, op) {
			cmp, is = op, is[len(op):]
			break
		}
	}
	if is == "" || len(is) > 18 {
		return "", 0, false
	}
	for i := 0; i < len(is); i++ {
		if is[i] < '0' || is[i] > '9' {
			return "", 0, false
		}
	}
	n, err := strconv.ParseInt(is, 10, 64)
	if err != nil {
		return "", 0, false
	}
	return cmp, n, true
}

func compare(v int64, cmp string, n int64) bool {
	switch cmp {
	case "<":
		return v < n
	case ">":
		return v > n
	case "<=":
		return v <= n
	case ">=":
		return v >= n
	default:
		return v == n
	}
}

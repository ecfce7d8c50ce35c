// Package push implements push notifications: push rules (the spec's
// default rule set, the user's own rules and the /pushrules API), their
// evaluation for every new room event, unread notification counts, the
// /notifications list, pushers and delivery to push gateways.
//
// Evaluation never runs on a room's sequencer: the room engine's listener
// only queues the event, and workers evaluate it against every local
// member's compiled rules, write the notifications and counts, and hand
// notifying events to the pusher for delivery.
package push

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// Kind is a push rule kind, which is also its priority class.
type Kind string

// The rule kinds, in the order they are checked.
const (
	KindOverride  Kind = "override"
	KindContent   Kind = "content"
	KindRoom      Kind = "room"
	KindSender    Kind = "sender"
	KindUnderride Kind = "underride"
)

// Kinds lists the rule kinds in the order they are checked.
var Kinds = []Kind{KindOverride, KindContent, KindRoom, KindSender, KindUnderride}

// ParseKind checks a kind named in a request path.
func ParseKind(s string) (Kind, bool) {
	for _, k := range Kinds {
		if string(k) == s {
			return k, true
		}
	}
	return "", false
}

// hasConditions reports whether rules of kind k carry a conditions list
// (room, sender and content rules have implied conditions instead).
func (k Kind) hasConditions() bool { return k == KindOverride || k == KindUnderride }

// Condition kinds the spec defines.
const (
	CondEventMatch                   = "event_match"
	CondEventPropertyIs              = "event_property_is"
	CondEventPropertyContains        = "event_property_contains"
	CondContainsDisplayName          = "contains_display_name"
	CondRoomMemberCount              = "room_member_count"
	CondSenderNotificationPermission = "sender_notification_permission"
)

// Condition is one condition of an override or underride rule, as clients
// write it. Pattern is a pointer because an empty pattern is meaningful
// (.m.rule.tombstone matches state_key ""); Value keeps the raw JSON
// because null is a value to match.
type Condition struct {
	Kind    string          `json:"kind"`
	Key     string          `json:"key,omitempty"`
	Pattern *string         `json:"pattern,omitempty"`
	Is      string          `json:"is,omitempty"`
	Value   json.RawMessage `json:"value,omitempty"`
}

// Rule is one push rule as the API and the m.push_rules event show it.
// Conditions is nil for kinds without conditions, so that it is left out
// of their JSON, and non-nil (possibly empty) for the others.
type Rule struct {
	RuleID     string            `json:"rule_id"`
	Default    bool              `json:"default"`
	Enabled    bool              `json:"enabled"`
	Conditions []Condition       `json:"conditions,omitzero"`
	Pattern    *string           `json:"pattern,omitempty"`
	Actions    []json.RawMessage `json:"actions"`
}

// Ruleset is a user's rules by kind, each list in priority order.
type Ruleset struct {
	Override  []*Rule `json:"override"`
	Content   []*Rule `json:"content"`
	Room      []*Rule `json:"room"`
	Sender    []*Rule `json:"sender"`
	Underride []*Rule `json:"underride"`
}

// List returns a pointer to the list of kind k.
func (rs *Ruleset) List(k Kind) *[]*Rule {
	switch k {
	case KindOverride:
		return &rs.Override
	case KindContent:
		return &rs.Content
	case KindRoom:
		return &rs.Room
	case KindSender:
		return &rs.Sender
	default:
		return &rs.Underride
	}
}

// Find returns the rule of kind k with the ID, and its index, or nil.
func (rs *Ruleset) Find(k Kind, ruleID string) (*Rule, int) {
	for i, r := range *rs.List(k) {
		if r.RuleID == ruleID {
			return r, i
		}
	}
	return nil, -1
}

// clone copies the ruleset deeply enough that changing rules and lists of
// the copy leaves the original alone.
func (rs *Ruleset) clone() *Ruleset {
	out := &Ruleset{}
	for _, k := range Kinds {
		src := *rs.List(k)
		dst := make([]*Rule, len(src))
		for i, r := range src {
			c := *r
			if r.Actions != nil {
				c.Actions = append(make([]json.RawMessage, 0, len(r.Actions)), r.Actions...)
			}
			if r.Conditions != nil {
				c.Conditions = append([]Condition{}, r.Conditions...)
			}
			dst[i] = &c
		}
		*out.List(k) = dst
	}
	return out
}

// normalise makes every list non-nil so that the JSON has every kind.
func (rs *Ruleset) normalise() {
	for _, k := range Kinds {
		if l := rs.List(k); *l == nil {
			*l = []*Rule{}
		}
	}
}

// PushRulesContent is the content of the m.push_rules account data event.
type PushRulesContent struct {
	Global *Ruleset `json:"global"`
}

// PushRulesType is the account data type holding a user's push rules.
const PushRulesType = "m.push_rules"

// Errors of the push rules API; the client API maps them to Matrix errors.
var (
	// ErrNotFound: no such rule.
	ErrNotFound = errors.New("push rule not found")
	// ErrInvalid: a value out of range or a change the spec forbids.
	ErrInvalid = errors.New("invalid")
	// ErrRelativeNotFound: the before/after rule does not exist.
	ErrRelativeNotFound = errors.New("before/after rule not found")
)

func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// validRuleID checks a rule ID a client chose: no reserved leading dot, no
// slashes or backslashes (they would be ambiguous in paths).
func validRuleID(k Kind, ruleID string) error {
	if ruleID == "" {
		return invalidf("the rule ID must not be empty")
	}
	if strings.HasPrefix(ruleID, ".") {
		return invalidf("rule IDs starting with '.' are reserved for server-default rules")
	}
	if strings.ContainsAny(ruleID, `/\`) {
		return invalidf("rule IDs must not contain '/' or '\\'")
	}
	if len(ruleID) > 255 {
		return invalidf("the rule ID is too long")
	}
	switch k {
	case KindRoom:
		if !strings.HasPrefix(ruleID, "!") {
			return invalidf("the ID of a room rule is the room's ID")
		}
	case KindSender:
		if !strings.HasPrefix(ruleID, "@") {
			return invalidf("the ID of a sender rule is the sender's user ID")
		}
	}
	return nil
}

// historicalActions are actions the spec retired; they are stripped.
var historicalActions = map[string]bool{"dont_notify": true, "coalesce": true}

// maxActions and maxConditions bound what one rule may hold.
const (
	maxActions    = 32
	maxConditions = 32
)

// ParseActions validates and normalises an actions list: "notify" and
// set_tweak objects are kept (compacted), historical actions dropped.
func ParseActions(raw []json.RawMessage) ([]json.RawMessage, error) {
	if len(raw) > maxActions {
		return nil, invalidf("too many actions")
	}
	out := make([]json.RawMessage, 0, len(raw))
	for _, a := range raw {
		a = bytes.TrimSpace(a)
		var s string
		if json.Unmarshal(a, &s) == nil {
			if historicalActions[s] {
				continue
			}
			if s != "notify" {
				return nil, invalidf("unrecognised action %q", s)
			}
			out = append(out, json.RawMessage(`"notify"`))
			continue
		}
		var tweak map[string]json.RawMessage
		if json.Unmarshal(a, &tweak) != nil || tweak == nil {
			return nil, invalidf("an action is a string or an object")
		}
		var name string
		if json.Unmarshal(tweak["set_tweak"], &name) != nil || name == "" {
			return nil, invalidf("action objects must have a set_tweak string")
		}
		var buf bytes.Buffer
		if err := json.Compact(&buf, a); err != nil {
			return nil, invalidf("bad action: %v", err)
		}
		out = append(out, buf.Bytes())
	}
	return out, nil
}

// validateConditions checks the conditions of a user rule. Unknown kinds
// are accepted and stored (they never match, as the spec requires); known
// kinds must have their parameters.
func validateConditions(conds []Condition) error {
	if len(conds) > maxConditions {
		return invalidf("too many conditions")
	}
	for _, c := range conds {
		switch c.Kind {
		case "":
			return invalidf("every condition needs a kind")
		case CondEventMatch:
			if c.Key == "" || c.Pattern == nil {
				return invalidf("event_match needs key and pattern")
			}
		case CondEventPropertyIs, CondEventPropertyContains:
			if c.Key == "" || len(c.Value) == 0 {
				return invalidf("%s needs key and value", c.Kind)
			}
			if _, ok := parseScalar(c.Value); !ok {
				return invalidf("%s: value must be a string, an integer, a boolean or null", c.Kind)
			}
		case CondRoomMemberCount:
			if _, _, ok := parseIs(c.Is); !ok {
				return invalidf("room_member_count needs is, such as \"2\" or \">=10\"")
			}
		case CondSenderNotificationPermission:
			if c.Key == "" {
				return invalidf("sender_notification_permission needs key")
			}
		}
	}
	return nil
}

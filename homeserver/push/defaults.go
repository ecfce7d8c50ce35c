package push

import (
	"encoding/json"
	"strings"
)

// The server-default rules, exactly as the spec's "Predefined Rules" list
// them and in that order (Matrix v1.19: the legacy rules that searched the
// body for the user's name were removed in v1.17, so there are no
// default content rules). "[the user's Matrix ID]" is the spec's
// placeholder; defaultRules substitutes the owner's ID.
const defaultRulesJSON = `{
  "override": [
    {"rule_id": ".m.rule.master", "default": true, "enabled": false, "conditions": [], "actions": []},
    {"rule_id": ".m.rule.suppress_notices", "default": true, "enabled": true,
     "conditions": [{"kind": "event_match", "key": "content.msgtype", "pattern": "m.notice"}],
     "actions": []},
    {"rule_id": ".m.rule.invite_for_me", "default": true, "enabled": true,
     "conditions": [
       {"key": "type", "kind": "event_match", "pattern": "m.room.member"},
       {"key": "content.membership", "kind": "event_match", "pattern": "invite"},
       {"key": "state_key", "kind": "event_match", "pattern": "[the user's Matrix ID]"}],
     "actions": ["notify", {"set_tweak": "sound", "value": "default"}]},
    {"rule_id": ".m.rule.member_event", "default": true, "enabled": true,
     "conditions": [{"key": "type", "kind": "event_match", "pattern": "m.room.member"}],
     "actions": []},
    {"rule_id": ".m.rule.is_user_mention", "default": true, "enabled": true,
     "conditions": [{"kind": "event_property_contains", "key": "content.m\\.mentions.user_ids", "value": "[the user's Matrix ID]"}],
     "actions": ["notify", {"set_tweak": "sound", "value": "default"}, {"set_tweak": "highlight"}]},
    {"rule_id": ".m.rule.is_room_mention", "default": true, "enabled": true,
     "conditions": [
       {"kind": "event_property_is", "key": "content.m\\.mentions.room", "value": true},
       {"kind": "sender_notification_permission", "key": "room"}],
     "actions": ["notify", {"set_tweak": "highlight"}]},
    {"rule_id": ".m.rule.tombstone", "default": true, "enabled": true,
     "conditions": [
       {"kind": "event_match", "key": "type", "pattern": "m.room.tombstone"},
       {"kind": "event_match", "key": "state_key", "pattern": ""}],
     "actions": ["notify", {"set_tweak": "highlight"}]},
    {"rule_id": ".m.rule.reaction", "default": true, "enabled": true,
     "conditions": [{"kind": "event_match", "key": "type", "pattern": "m.reaction"}],
     "actions": []},
    {"rule_id": ".m.rule.room.server_acl", "default": true, "enabled": true,
     "conditions": [
       {"kind": "event_match", "key": "type", "pattern": "m.room.server_acl"},
       {"kind": "event_match", "key": "state_key", "pattern": ""}],
     "actions": []},
    {"rule_id": ".m.rule.suppress_edits", "default": true, "enabled": true,
     "conditions": [{"kind": "event_property_is", "key": "content.m\\.relates_to.rel_type", "value": "m.replace"}],
     "actions": []}
  ],
  "content": [],
  "room": [],
  "sender": [],
  "underride": [
    {"rule_id": ".m.rule.call", "default": true, "enabled": true,
     "conditions": [{"key": "type", "kind": "event_match", "pattern": "m.call.invite"}],
     "actions": ["notify", {"set_tweak": "sound", "value": "ring"}]},
    {"rule_id": ".m.rule.encrypted_room_one_to_one", "default": true, "enabled": true,
     "conditions": [
       {"kind": "room_member_count", "is": "2"},
       {"kind": "event_match", "key": "type", "pattern": "m.room.encrypted"}],
     "actions": ["notify", {"set_tweak": "sound", "value": "default"}]},
    {"rule_id": ".m.rule.room_one_to_one", "default": true, "enabled": true,
     "conditions": [
       {"kind": "room_member_count", "is": "2"},
       {"kind": "event_match", "key": "type", "pattern": "m.room.message"}],
     "actions": ["notify", {"set_tweak": "sound", "value": "default"}]},
    {"rule_id": ".m.rule.message", "default": true, "enabled": true,
     "conditions": [{"kind": "event_match", "key": "type", "pattern": "m.room.message"}],
     "actions": ["notify"]},
    {"rule_id": ".m.rule.encrypted", "default": true, "enabled": true,
     "conditions": [{"kind": "event_match", "key": "type", "pattern": "m.room.encrypted"}],
     "actions": ["notify"]}
  ]
}`

// userPlaceholder is the spec's stand-in for the owner's user ID.
const userPlaceholder = "[the user's Matrix ID]"

// defaultTemplate is the parsed default rule set, with the placeholder.
var defaultTemplate = func() *Ruleset {
	var rs Ruleset
	if err := json.Unmarshal([]byte(defaultRulesJSON), &rs); err != nil {
		panic("push: default rules do not parse: " + err.Error())
	}
	for _, k := range Kinds {
		for _, r := range *rs.List(k) {
			// Compact the actions the way ParseActions stores them, so
			// that comparisons with stored rules are byte-exact.
			acts, err := ParseActions(r.Actions)
			if err != nil {
				panic("push: default rule " + r.RuleID + ": " + err.Error())
			}
			r.Actions = acts
			if k.hasConditions() && r.Conditions == nil {
				r.Conditions = []Condition{}
			}
		}
	}
	rs.normalise()
	return &rs
}()

// DefaultRules returns the server-default rules for userID, a fresh copy
// the caller may change.
func DefaultRules(userID string) *Ruleset {
	rs := defaultTemplate.clone()
	quoted, _ := json.Marshal(userID)
	for _, k := range Kinds {
		for _, r := range *rs.List(k) {
			for i, c := range r.Conditions {
				if c.Pattern != nil && *c.Pattern == userPlaceholder {
					p := userID
					r.Conditions[i].Pattern = &p
				}
				if string(c.Value) == `"`+userPlaceholder+`"` {
					r.Conditions[i].Value = quoted
				}
			}
		}
	}
	return rs
}

// isDefaultID reports whether a rule ID is reserved for server-default rules.
func isDefaultID(ruleID string) bool { return strings.HasPrefix(ruleID, ".") }

// masterRuleID is the one default rule that outranks user rules.
const masterRuleID = ".m.rule.master"

// Merge builds a user's effective rule set from what was stored (nil when
// the user never changed anything): the user's own rules in their stored
// order, and the server-default rules of this version of the server with
// the enabled flag and actions the user chose for them. Server-default rules
// rank below the user's rules of their kind, except .m.rule.master, which
// comes first. Stored default rules this server no longer has are dropped,
// and the conditions of default rules always come from the server, so that
// a server upgrade updates them.
func Merge(stored *Ruleset, userID string) *Ruleset {
	out := DefaultRules(userID)
	if stored == nil {
		return out
	}
	type state struct {
		enabled bool
		actions []json.RawMessage
	}
	for _, k := range Kinds {
		defaults := *out.List(k)
		chosen := map[string]state{}
		var own []*Rule
		for _, r := range *stored.List(k) {
			if r == nil {
				continue
			}
			if isDefaultID(r.RuleID) {
				chosen[r.RuleID] = state{r.Enabled, r.Actions}
				continue
			}
			c := *r
			c.Default = false
			if k.hasConditions() && c.Conditions == nil {
				c.Conditions = []Condition{}
			}
			if !k.hasConditions() {
				c.Conditions = nil
			}
			if c.Actions == nil {
				c.Actions = []json.RawMessage{}
			}
			own = append(own, &c)
		}
		for _, d := range defaults {
			if st, ok := chosen[d.RuleID]; ok {
				d.Enabled = st.enabled
				if st.actions != nil {
					d.Actions = st.actions
				}
			}
		}
		merged := make([]*Rule, 0, len(defaults)+len(own))
		rest := defaults
		if k == KindOverride && len(rest) > 0 && rest[0].RuleID == masterRuleID {
			merged = append(merged, rest[0])
			rest = rest[1:]
		}
		merged = append(merged, own...)
		merged = append(merged, rest...)
		*out.List(k) = merged
	}
	return out
}

package push

import (
	"encoding/json"
	"errors"
	"fmt"
)

// ErrMissingParam: a required field of the request is absent.
var ErrMissingParam = errors.New("missing parameter")

// RuleInput is the body of PUT /pushrules/global/{kind}/{ruleId}.
type RuleInput struct {
	Actions    []json.RawMessage `json:"actions"`
	Conditions []Condition       `json:"conditions"`
	Pattern    *string           `json:"pattern"`
}

// putRule adds or replaces a user-defined rule in rs. A new rule is
// enabled and, without before or after, becomes the most important
// user-defined rule of its kind; a replaced rule keeps its enabled flag
// and, without before or after, its place. before and after name
// user-defined rules of the same kind; when both are given, before wins.
func putRule(rs *Ruleset, k Kind, ruleID, before, after string, in RuleInput) error {
	if err := validRuleID(k, ruleID); err != nil {
		return err
	}
	if in.Actions == nil {
		return fmt.Errorf("%w: actions", ErrMissingParam)
	}
	actions, err := ParseActions(in.Actions)
	if err != nil {
		return err
	}
	rule := &Rule{RuleID: ruleID, Enabled: true, Actions: actions}
	switch k {
	case KindContent:
		if in.Pattern == nil {
			return fmt.Errorf("%w: pattern (content rules need one)", ErrMissingParam)
		}
		p := *in.Pattern
		rule.Pattern = &p
	case KindOverride, KindUnderride:
		if err := validateConditions(in.Conditions); err != nil {
			return err
		}
		rule.Conditions = append([]Condition{}, in.Conditions...)
	}
	relative := before
	if relative == "" {
		relative = after
	}
	if relative != "" {
		if isDefaultID(relative) {
			return invalidf("rules cannot be placed relative to a server-default rule")
		}
		if relative == ruleID {
			return invalidf("a rule cannot be placed relative to itself")
		}
		if r, _ := rs.Find(k, relative); r == nil {
			return fmt.Errorf("%w: %s", ErrRelativeNotFound, relative)
		}
	}
	list := rs.List(k)
	at := -1
	if old, i := rs.Find(k, ruleID); old != nil {
		rule.Enabled = old.Enabled
		*list = append((*list)[:i], (*list)[i+1:]...)
		at = i
	}
	switch {
	case before != "":
		_, at = rs.Find(k, before)
	case after != "":
		_, at = rs.Find(k, after)
		at++
	case at < 0:
		at = firstUserIndex(*list, k)
	}
	*list = append((*list)[:at], append([]*Rule{rule}, (*list)[at:]...)...)
	return nil
}

// firstUserIndex is where the most important user-defined rule of a kind
// goes: first, except below .m.rule.master among overrides.
func firstUserIndex(list []*Rule, k Kind) int {
	if k == KindOverride && len(list) > 0 && list[0].RuleID == masterRuleID {
		return 1
	}
	return 0
}

// deleteRule removes a user-defined rule.
func deleteRule(rs *Ruleset, k Kind, ruleID string) error {
	r, i := rs.Find(k, ruleID)
	if r == nil {
		return ErrNotFound
	}
	if r.Default {
		return invalidf("server-default rules cannot be deleted; disable them instead")
	}
	list := rs.List(k)
	*list = append((*list)[:i], (*list)[i+1:]...)
	return nil
}

// setEnabled enables or disables a rule, server-default ones included.
func setEnabled(rs *Ruleset, k Kind, ruleID string, enabled bool) error {
	r, _ := rs.Find(k, ruleID)
	if r == nil {
		return ErrNotFound
	}
	r.Enabled = enabled
	return nil
}

// setActions replaces a rule's actions, server-default ones included.
func setActions(rs *Ruleset, k Kind, ruleID string, raw []json.RawMessage) error {
	r, _ := rs.Find(k, ruleID)
	if r == nil {
		return ErrNotFound
	}
	if raw == nil {
		return fmt.Errorf("%w: actions", ErrMissingParam)
	}
	actions, err := ParseActions(raw)
	if err != nil {
		return err
	}
	r.Actions = actions
	return nil
}

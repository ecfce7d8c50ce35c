package clientapi

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"github.com/gorilla/mux"

	"github.com/parley-chat/parley/homeserver/httputil"
	"github.com/parley-chat/parley/homeserver/push"
	"github.com/parley-chat/parley/homeserver/users"
)

// pushAPI serves push rules, notifications and pushers.
type pushAPI struct {
	*API
	svc *push.Service
}

// RegisterPush adds the push endpoints (push rules, /notifications,
// pushers) under every client prefix.
func (a *API) RegisterPush(r *mux.Router, svc *push.Service) {
	p := &pushAPI{API: a, svc: svc}
	get, put, post, del := http.MethodGet, http.MethodPut, http.MethodPost, http.MethodDelete
	for _, prefix := range clientPrefixes {
		route := func(path string, h func(http.ResponseWriter, *http.Request, *users.Device), methods ...string) {
			r.HandleFunc(prefix+path, a.authed(h)).Methods(methods...)
		}
		route("/pushrules/", p.getAllRules, get)
		route("/pushrules", p.getAllRules, get)
		route("/pushrules/{scope}/", p.getScope, get)
		route("/pushrules/{scope}", p.getScope, get)
		route("/pushrules/{scope}/{kind}/", p.getKind, get)
		route("/pushrules/{scope}/{kind}/{ruleId}", p.getRule, get)
		route("/pushrules/{scope}/{kind}/{ruleId}", p.putRule, put)
		route("/pushrules/{scope}/{kind}/{ruleId}", p.deleteRule, del)
		route("/pushrules/{scope}/{kind}/{ruleId}/enabled", p.getEnabled, get)
		route("/pushrules/{scope}/{kind}/{ruleId}/enabled", p.putEnabled, put)
		route("/pushrules/{scope}/{kind}/{ruleId}/actions", p.getActions, get)
		route("/pushrules/{scope}/{kind}/{ruleId}/actions", p.putActions, put)
		route("/notifications", p.notifications, get)
		route("/pushers", p.getPushers, get)
		route("/pushers/set", p.setPusher, post)
	}
}

// pushError maps the push service's errors to Matrix errors.
func pushError(w http.ResponseWriter, r *http.Request, err error) {
	msg := func(sentinel error) string {
		return strings.TrimPrefix(strings.TrimPrefix(err.Error(), sentinel.Error()), ": ")
	}
	switch {
	case errors.Is(err, push.ErrNotFound):
		httputil.WriteError(w, httputil.NotFound("the push rule was not found"))
	case errors.Is(err, push.ErrRelativeNotFound):
		// The OpenAPI's own example for this case: 400 M_UNKNOWN.
		httputil.WriteError(w, httputil.NewError(http.StatusBadRequest, "M_UNKNOWN", "%s", err.Error()))
	case errors.Is(err, push.ErrMissingParam):
		httputil.WriteError(w, httputil.NewError(http.StatusBadRequest, "M_MISSING_PARAM", "missing parameters: %s", msg(push.ErrMissingParam)))
	case errors.Is(err, push.ErrInvalid):
		httputil.WriteError(w, httputil.InvalidParam(msg(push.ErrInvalid)))
	default:
		httputil.Logger(r.Context()).WithError(err).Error("push request failed")
		httputil.WriteError(w, httputil.Unknown())
	}
}

// scopeOK checks the {scope} of the path: "global" is the only ruleset.
func scopeOK(w http.ResponseWriter, r *http.Request) bool {
	if mux.Vars(r)["scope"] != "global" {
		httputil.WriteError(w, httputil.InvalidParam("the only push rule scope is global"))
		return false
	}
	return true
}

// ruleTarget reads scope, kind and rule ID from the path.
func ruleTarget(w http.ResponseWriter, r *http.Request) (push.Kind, string, bool) {
	if !scopeOK(w, r) {
		return "", "", false
	}
	k, ok := push.ParseKind(mux.Vars(r)["kind"])
	if !ok {
		httputil.WriteError(w, httputil.InvalidParam("unknown push rule kind; want override, content, room, sender or underride"))
		return "", "", false
	}
	return k, mux.Vars(r)["ruleId"], true
}

// getAllRules is GET /pushrules/.
func (p *pushAPI) getAllRules(w http.ResponseWriter, r *http.Request, dev *users.Device) {
	rs, err := p.svc.Rules(r.Context(), dev.UserID)
	if err != nil {
		pushError(w, r, err)
		return
	}
	httputil.WriteJSON(w, http.StatusOK, push.PushRulesContent{Global: rs})
}

// getScope is GET /pushrules/global/.
func (p *pushAPI) getScope(w http.ResponseWriter, r *http.Request, dev *users.Device) {
	if !scopeOK(w, r) {
		return
	}
	rs, err := p.svc.Rules(r.Context(), dev.UserID)
	if err != nil {
		pushError(w, r, err)
		return
	}
	httputil.WriteJSON(w, http.StatusOK, rs)
}

// getKind is GET /pushrules/global/{kind}/, the rules of one kind (not in
// the current spec; older clients call it).
func (p *pushAPI) getKind(w http.ResponseWriter, r *http.Request, dev *users.Device) {
	if !scopeOK(w, r) {
		return
	}
	k, ok := push.ParseKind(mux.Vars(r)["kind"])
	if !ok {
		httputil.WriteError(w, httputil.InvalidParam("unknown push rule kind"))
		return
	}
	rs, err := p.svc.Rules(r.Context(), dev.UserID)
	if err != nil {
		pushError(w, r, err)
		return
	}
	httputil.WriteJSON(w, http.StatusOK, *rs.List(k))
}

// pathRule loads the caller's rule that the path names; on failure it has
// answered the request.
func (p *pushAPI) pathRule(w http.ResponseWriter, r *http.Request, dev *users.Device) (*push.Rule, bool) {
	k, id, ok := ruleTarget(w, r)
	if !ok {
		return nil, false
	}
	rule, err := p.svc.Rule(r.Context(), dev.UserID, k, id)
	if err != nil {
		pushError(w, r, err)
		return nil, false
	}
	return rule, true
}

// getRule is GET /pushrules/global/{kind}/{ruleId}.
func (p *pushAPI) getRule(w http.ResponseWriter, r *http.Request, dev *users.Device) {
	if rule, ok := p.pathRule(w, r, dev); ok {
		httputil.WriteJSON(w, http.StatusOK, rule)
	}
}

// putRule is PUT /pushrules/global/{kind}/{ruleId}.
func (p *pushAPI) putRule(w http.ResponseWriter, r *http.Request, dev *users.Device) {
	k, id, ok := ruleTarget(w, r)
	if !ok {
		return
	}
	var in push.RuleInput
	if e := httputil.ReadJSON(r, &in); e != nil {
		httputil.WriteError(w, e)
		return
	}
	q := r.URL.Query()
	if err := p.svc.PutRule(r.Context(), dev.UserID, k, id, q.Get("before"), q.Get("after"), in); err != nil {
		pushError(w, r, err)
		return
	}
	httputil.WriteJSON(w, http.StatusOK, struct{}{})
}

// deleteRule is DELETE /pushrules/global/{kind}/{ruleId}.
func (p *pushAPI) deleteRule(w http.ResponseWriter, r *http.Request, dev *users.Device) {
	k, id, ok := ruleTarget(w, r)
	if !ok {
		return
	}
	if err := p.svc.DeleteRule(r.Context(), dev.UserID, k, id); err != nil {
		pushError(w, r, err)
		return
	}
	httputil.WriteJSON(w, http.StatusOK, struct{}{})
}

// getEnabled is GET /pushrules/global/{kind}/{ruleId}/enabled.
func (p *pushAPI) getEnabled(w http.ResponseWriter, r *http.Request, dev *users.Device) {
	if rule, ok := p.pathRule(w, r, dev); ok {
		httputil.WriteJSON(w, http.StatusOK, map[string]bool{"enabled": rule.Enabled})
	}
}

// putEnabled is PUT /pushrules/global/{kind}/{ruleId}/enabled.
func (p *pushAPI) putEnabled(w http.ResponseWriter, r *http.Request, dev *users.Device) {
	k, id, ok := ruleTarget(w, r)
	if !ok {
		return
	}
	var body struct {
		Enabled *bool `json:"enabled"`
	}
	if e := httputil.ReadJSON(r, &body); e != nil {
		httputil.WriteError(w, e)
		return
	}
	if body.Enabled == nil {
		httputil.WriteError(w, httputil.NewError(http.StatusBadRequest, "M_MISSING_PARAM", "missing parameters: enabled"))
		return
	}
	if err := p.svc.SetRuleEnabled(r.Context(), dev.UserID, k, id, *body.Enabled); err != nil {
		pushError(w, r, err)
		return
	}
	httputil.WriteJSON(w, http.StatusOK, struct{}{})
}

// getActions is GET /pushrules/global/{kind}/{ruleId}/actions.
func (p *pushAPI) getActions(w http.ResponseWriter, r *http.Request, dev *users.Device) {
	if rule, ok := p.pathRule(w, r, dev); ok {
		httputil.WriteJSON(w, http.StatusOK, map[string][]json.RawMessage{"actions": rule.Actions})
	}
}

// putActions is PUT /pushrules/global/{kind}/{ruleId}/actions.
func (p *pushAPI) putActions(w http.ResponseWriter, r *http.Request, dev *users.Device) {
	k, id, ok := ruleTarget(w, r)
	if !ok {
		return
	}
	var body struct {
		Actions []json.RawMessage `json:"actions"`
	}
	if e := httputil.ReadJSON(r, &body); e != nil {
		httputil.WriteError(w, e)
		return
	}
	if err := p.svc.SetRuleActions(r.Context(), dev.UserID, k, id, body.Actions); err != nil {
		pushError(w, r, err)
		return
	}
	httputil.WriteJSON(w, http.StatusOK, struct{}{})
}

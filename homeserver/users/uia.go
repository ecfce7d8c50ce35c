package users

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/parley-chat/parley/storage"
)

// The authentication types of user-interactive authentication this server
// offers.
const (
	AuthTypePassword          = "m.login.password"
	AuthTypeDummy             = "m.login.dummy"
	AuthTypeRegistrationToken = "m.login.registration_token"
)

// uiaSessionTTL is how long a client has to finish a user-interactive
// authentication.
const uiaSessionTTL = 15 * time.Minute

// Flow is one sequence of stages that completes an authentication.
type Flow struct {
	Stages []string `json:"stages"`
}

// PasswordFlows are the flows of endpoints that ask a logged-in user to
// confirm their password (changing it, deleting devices, deactivating).
var PasswordFlows = []Flow{{Stages: []string{AuthTypePassword}}}

// DummyFlows are the flows of open registration.
var DummyFlows = []Flow{{Stages: []string{AuthTypeDummy}}}

// RegistrationTokenFlows are the flows of registration that needs a
// registration token. The token stage alone completes it: m.login.dummy is
// only there to complete a flow with no other stage, or to tell apart flows
// one of which would otherwise be a subset of another (client-server API,
// "Dummy Auth"), and neither is the case here. Synapse offers
// [registration_token, dummy] only because it prepends the token stage to
// its default dummy flow; clients follow whatever flow is offered.
var RegistrationTokenFlows = []Flow{{Stages: []string{AuthTypeRegistrationToken}}}

// AuthData is the "auth" object a client sends to complete a stage.
type AuthData struct {
	Type    string `json:"type"`
	Session string `json:"session"`
	// m.login.password: who (Identifier, or the legacy User) and the password.
	Identifier *Identifier `json:"identifier"`
	User       string      `json:"user"`
	Password   string      `json:"password"`
	// m.login.registration_token: the token.
	Token string `json:"token"`
}

// UIARequest is one request to an endpoint protected by user-interactive
// authentication.
type UIARequest struct {
	// Action names what is being authorised, such as
	// "POST /account/password". A session started for one action cannot
	// authorise another.
	Action string
	// Localpart is the logged-in user who must authenticate; "" when
	// nobody is logged in (registration).
	Localpart string
	// Flows are the flows the endpoint offers.
	Flows []Flow
	// Auth is the request's auth object, nil when it has none.
	Auth *AuthData
}

// UIAChallenge is the body of the 401 response that asks the client for
// (more) authentication. ErrCode and Error are set when the last attempt
// failed.
type UIAChallenge struct {
	Flows     []Flow         `json:"flows"`
	Params    map[string]any `json:"params"`
	Session   string         `json:"session"`
	Completed []string       `json:"completed,omitempty"`
	ErrCode   string         `json:"errcode,omitempty"`
	Error     string         `json:"error,omitempty"`
}

// UserInteractiveAuth runs one step of user-interactive authentication. It
// returns nil, nil when the request is fully authenticated (the session is
// then used up), a challenge to send with status 401 when more is needed,
// or an internal error.
//
// A request without auth always gets a challenge with a new session, as
// the spec requires even when the only stage is m.login.dummy. An unknown,
// expired or foreign session also gets a fresh challenge.
func (s *Service) UserInteractiveAuth(ctx context.Context, req UIARequest) (*UIAChallenge, error) {
	_, _, ch, err := s.userInteractiveAuth(ctx, req)
	return ch, err
}

// userInteractiveAuth is UserInteractiveAuth that also returns, once the
// request is authenticated, the session it completed and its stages.
func (s *Service) userInteractiveAuth(ctx context.Context, req UIARequest) (string, []string, *UIAChallenge, error) {
	now := s.now()
	var sess *storage.UIASession
	if req.Auth != nil && req.Auth.Session != "" {
		got, err := s.db.GetUIASession(ctx, req.Auth.Session, now.UnixMilli())
		switch {
		case errors.Is(err, storage.ErrNotFound):
		case err != nil:
			return "", nil, nil, err
		case got.Action == req.Action && got.Localpart == req.Localpart:
			sess = got
		}
	}
	if sess == nil {
		sess = &storage.UIASession{
			ID: randomString(18), Action: req.Action, Localpart: req.Localpart,
			Completed: "[]", ExpiresTS: now.Add(uiaSessionTTL).UnixMilli(),
		}
		if err := s.db.CreateUIASession(ctx, *sess, now.UnixMilli()); err != nil {
			return "", nil, nil, err
		}
		if req.Auth == nil || req.Auth.Session != "" {
			return "", nil, challenge(req, sess.ID, nil, "", ""), nil
		}
		// An auth object without a session attempts its stage in the new one.
	}
	var completed []string
	if err := json.Unmarshal([]byte(sess.Completed), &completed); err != nil {
		return "", nil, nil, fmt.Errorf("UIA session %s: %w", sess.ID, err)
	}
	if req.Auth == nil {
		return "", nil, challenge(req, sess.ID, completed, "", ""), nil
	}
	// A stage may be attempted only if it is next in some flow that
	// agrees with what is completed. An auth object without a type only
	// asks whether the session is complete (after out-of-band stages).
	if typ := req.Auth.Type; typ != "" {
		if !nextStage(req.Flows, completed, typ) {
			if slices.Contains(completed, typ) {
				// Completed stages cannot be retried.
				return "", nil, challenge(req, sess.ID, completed, "", ""), nil
			}
			return "", nil, challenge(req, sess.ID, completed, "M_FORBIDDEN", fmt.Sprintf("authentication type %q is not expected here", typ)), nil
		}
		if code, msg, err := s.attemptStage(ctx, req, sess); err != nil {
			return "", nil, nil, err
		} else if code != "" {
			return "", nil, challenge(req, sess.ID, completed, code, msg), nil
		}
		completed = append(completed, typ)
	}
	if !flowComplete(req.Flows, completed) {
		b, _ := json.Marshal(completed)
		if err := s.db.SetUIASessionCompleted(ctx, sess.ID, string(b)); err != nil {
			return "", nil, nil, err
		}
		return "", nil, challenge(req, sess.ID, completed, "", ""), nil
	}
	// Used up: the session cannot authorise a second request. Of two
	// requests completing it at once, only the one that deletes it goes on.
	if ok, err := s.db.DeleteUIASession(ctx, sess.ID); err != nil {
		return "", nil, nil, err
	} else if !ok {
		return "", nil, challenge(req, sess.ID, completed, "M_FORBIDDEN", "the authentication session was used up"), nil
	}
	return sess.ID, completed, nil, nil
}

// attemptStage checks the credentials of one stage; a failure returns the
// error code and message for the challenge.
func (s *Service) attemptStage(ctx context.Context, req UIARequest, sess *storage.UIASession) (code, msg string, err error) {
	switch req.Auth.Type {
	case AuthTypeDummy:
		return "", "", nil
	case AuthTypeRegistrationToken:
		return s.reserveRegistrationToken(ctx, req.Auth.Token, sess)
	case AuthTypePassword:
		localpart := req.Localpart
		if req.Auth.Identifier != nil || req.Auth.User != "" {
			who, err := s.ResolveIdentifier(req.Auth.Identifier, req.Auth.User, "", "")
			if err != nil {
				return uiaErrCode(err), err.Error(), nil
			}
			if req.Localpart != "" && who != req.Localpart {
				return "M_FORBIDDEN", "the identifier does not name the logged-in user", nil
			}
			localpart = who
		}
		if localpart == "" {
			return "M_BAD_JSON", "auth.identifier is required", nil
		}
		err := s.CheckLogin(ctx, localpart, req.Auth.Password)
		switch {
		case errors.Is(err, ErrForbidden):
			return "M_FORBIDDEN", "invalid password", nil
		case errors.Is(err, ErrUserDeactivated):
			return "M_USER_DEACTIVATED", err.Error(), nil
		}
		return "", "", err
	}
	return "M_FORBIDDEN", "unsupported authentication type", nil
}

func uiaErrCode(err error) string {
	switch {
	case errors.Is(err, ErrBadJSON):
		return "M_BAD_JSON"
	case errors.Is(err, ErrUnknownLoginType):
		return "M_UNKNOWN"
	default:
		return "M_FORBIDDEN"
	}
}

func challenge(req UIARequest, session string, completed []string, code, msg string) *UIAChallenge {
	return &UIAChallenge{Flows: req.Flows, Params: map[string]any{}, Session: session, Completed: completed, ErrCode: code, Error: msg}
}

// nextStage reports whether typ may come after completed in some flow.
func nextStage(flows []Flow, completed []string, typ string) bool {
	for _, f := range flows {
		if len(f.Stages) > len(completed) && slices.Equal(f.Stages[:len(completed)], completed) && f.Stages[len(completed)] == typ {
			return true
		}
	}
	return false
}

// flowComplete reports whether completed is exactly one of the flows.
func flowComplete(flows []Flow, completed []string) bool {
	for _, f := range flows {
		if slices.Equal(f.Stages, completed) {
			return true
		}
	}
	return false
}

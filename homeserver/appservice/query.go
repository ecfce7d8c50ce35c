package appservice

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/parley-chat/parley/storage"
)

// maxResponseBytes bounds what is read of a service's answer.
const maxResponseBytes = 4 << 20

// call makes a request to a service with its hs_token, within timeout. A
// service that does not know the path (404 or 405) is asked again at
// legacy, the path of older versions of the spec, when there is one;
// there the token also goes in the access_token parameter, as those
// versions had it.
func (s *Service) call(ctx context.Context, r *Registration, method, path, legacy string, query url.Values, body []byte, timeout time.Duration) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	status, resp, err := s.callOnce(ctx, r, method, path, query, body, false)
	if err == nil && legacy != "" && (status == http.StatusNotFound || status == http.StatusMethodNotAllowed) {
		if st, rb, err2 := s.callOnce(ctx, r, method, legacy, query, body, true); err2 == nil && st != http.StatusNotFound && st != http.StatusMethodNotAllowed {
			return st, rb, nil
		}
	}
	return status, resp, err
}

func (s *Service) callOnce(ctx context.Context, r *Registration, method, path string, query url.Values, body []byte, legacy bool) (int, []byte, error) {
	q := url.Values{}
	for k, v := range query {
		q[k] = v
	}
	if legacy {
		q.Set("access_token", r.HSToken)
	}
	u := r.URL + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+r.HSToken)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	rb, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	if err != nil {
		return 0, nil, err
	}
	return resp.StatusCode, rb, nil
}

// sendTxn pushes a transaction; only 200 acknowledges it.
func (s *Service) sendTxn(ctx context.Context, r *Registration, t *storage.AppServiceTxn) error {
	id := url.PathEscape(t.TxnID)
	status, body, err := s.call(ctx, r, http.MethodPut, "/_matrix/app/v1/transactions/"+id, "/transactions/"+id, nil, []byte(t.Body), s.cfg.TxnTimeout)
	if err != nil {
		return err
	}
	if status != http.StatusOK {
		return fmt.Errorf("the application service answered %d: %.200s", status, body)
	}
	return nil
}

// candidates lists the services with a URL that match, exclusive ones
// first: they are the ones asked about an unknown user or alias.
func (s *Service) candidates(match func(r *Registration) (bool, bool)) []*Registration {
	var ex, other []*Registration
	for _, r := range s.regs {
		if r.URL == "" {
			continue
		}
		if m, e := match(r); m && e {
			ex = append(ex, r)
		} else if m {
			other = append(other, r)
		}
	}
	return append(ex, other...)
}

// QueryUser makes sure a local user in a service's namespace exists: when
// there is no such account, the services whose namespaces cover the user
// are asked (GET /_matrix/app/v1/users/{userId}); one answering 200 has
// created it. It reports whether the user exists now. Users no service
// claims are left alone at the cost of a few regular expressions.
func (s *Service) QueryUser(ctx context.Context, userID string) bool {
	if s == nil {
		return false
	}
	cands := s.candidates(func(r *Registration) (bool, bool) {
		if userID == r.SenderUserID || !r.IsUser(userID) {
			return false, false
		}
		return true, r.ClaimsUserExclusively(userID)
	})
	if len(cands) == 0 {
		return false
	}
	if s.exists(ctx, userID) {
		return true
	}
	for _, r := range cands {
		status, _, err := s.call(ctx, r, http.MethodGet, "/_matrix/app/v1/users/"+url.PathEscape(userID), "/users/"+url.PathEscape(userID), nil, nil, s.cfg.QueryTimeout)
		log := s.log.WithField("appservice", r.ID).WithField("user_id", userID)
		if err != nil {
			log.WithError(err).Info("appservice: user query failed")
			continue
		}
		if status == http.StatusOK {
			if s.exists(ctx, userID) {
				return true
			}
			log.Warn("appservice: the service answered the user query but did not create the user")
		}
	}
	return false
}

// QueryAlias asks the services whose alias namespaces cover an unknown
// local alias (GET /_matrix/app/v1/rooms/{roomAlias}); one answering 200
// has created it. It reports whether the alias exists now.
func (s *Service) QueryAlias(ctx context.Context, alias string) bool {
	if s == nil {
		return false
	}
	cands := s.candidates(func(r *Registration) (bool, bool) { return r.MatchesAlias(alias) })
	for _, r := range cands {
		status, _, err := s.call(ctx, r, http.MethodGet, "/_matrix/app/v1/rooms/"+url.PathEscape(alias), "/rooms/"+url.PathEscape(alias), nil, nil, s.cfg.QueryTimeout)
		log := s.log.WithField("appservice", r.ID).WithField("alias", alias)
		if err != nil {
			log.WithError(err).Info("appservice: alias query failed")
			continue
		}
		if status == http.StatusOK {
			if _, _, err := s.db.ResolveAlias(ctx, alias); err == nil {
				return true
			}
			log.Warn("appservice: the service answered the alias query but did not create the alias")
		}
	}
	return false
}

// PingError is a failed ping, with the Matrix error code the client API
// answers: M_URL_NOT_SET, M_CONNECTION_FAILED, M_CONNECTION_TIMEOUT or
// M_BAD_STATUS (with the service's status and body).
type PingError struct {
	Code   string
	Status int
	Body   string
	Err    error
}

func (e *PingError) Error() string {
	switch e.Code {
	case "M_URL_NOT_SET":
		return "the application service has no URL configured"
	case "M_BAD_STATUS":
		return fmt.Sprintf("the application service answered the ping with status %d", e.Status)
	case "M_CONNECTION_TIMEOUT":
		return "the connection to the application service timed out"
	}
	return fmt.Sprintf("could not reach the application service: %v", e.Err)
}

// Ping calls the service's POST /_matrix/app/v1/ping with the transaction
// ID and returns how long it took. A successful ping also ends the wait
// of a transaction that is backing off: the service is evidently up.
func (s *Service) Ping(ctx context.Context, r *Registration, txnID string) (time.Duration, error) {
	if r.URL == "" {
		return 0, &PingError{Code: "M_URL_NOT_SET"}
	}
	body, _ := json.Marshal(map[string]string{"transaction_id": txnID})
	if txnID == "" {
		body = []byte("{}")
	}
	start := time.Now()
	status, resp, err := s.call(ctx, r, http.MethodPost, "/_matrix/app/v1/ping", "", nil, body, s.cfg.PingTimeout)
	took := time.Since(start)
	if err != nil {
		var ne net.Error
		if errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout() {
			return took, &PingError{Code: "M_CONNECTION_TIMEOUT", Err: err}
		}
		return took, &PingError{Code: "M_CONNECTION_FAILED", Err: err}
	}
	if status != http.StatusOK {
		return took, &PingError{Code: "M_BAD_STATUS", Status: status, Body: string(resp)}
	}
	if p := s.push.byID[r.ID]; p != nil {
		poke(p.retryNow)
	}
	return took, nil
}

// Protocols answers GET /thirdparty/protocols: the metadata of every
// protocol a service declares, as the services describe them. Protocols
// whose services do not answer are left out.
func (s *Service) Protocols(ctx context.Context) map[string]json.RawMessage {
	out := map[string]json.RawMessage{}
	if s == nil {
		return out
	}
	seen := map[string]bool{}
	var names []string
	for _, r := range s.regs {
		for _, p := range r.Protocols {
			if !seen[p] {
				seen[p] = true
				names = append(names, p)
			}
		}
	}
	sort.Strings(names)
	for _, p := range names {
		if meta, err := s.Protocol(ctx, p); err == nil {
			out[p] = meta
		}
	}
	return out
}

// Protocol answers GET /thirdparty/protocol/{protocol}: the first answer
// of the services declaring it, with every service's instances, each
// given an instance_id ("service|network_id") for the room directory.
// ErrNotFound means no service declares it or none answered.
func (s *Service) Protocol(ctx context.Context, protocol string) (json.RawMessage, error) {
	if s == nil {
		return nil, fmt.Errorf("%w: unknown protocol %q", ErrNotFound, protocol)
	}
	var merged map[string]json.RawMessage
	instances := []map[string]any{}
	for _, r := range s.regs {
		if r.URL == "" || !r.HasProtocol(protocol) {
			continue
		}
		path := "/thirdparty/protocol/" + url.PathEscape(protocol)
		status, body, err := s.call(ctx, r, http.MethodGet, "/_matrix/app/v1"+path, "/_matrix/app/unstable"+path, nil, nil, s.cfg.QueryTimeout)
		if err != nil || status != http.StatusOK {
			s.log.WithField("appservice", r.ID).WithField("protocol", protocol).WithField("status", status).WithError(err).
				Info("appservice: protocol metadata not available")
			continue
		}
		var meta map[string]json.RawMessage
		if json.Unmarshal(body, &meta) != nil {
			s.log.WithField("appservice", r.ID).WithField("protocol", protocol).Info("appservice: protocol metadata is not a JSON object")
			continue
		}
		var insts []map[string]any
		_ = json.Unmarshal(meta["instances"], &insts)
		for _, inst := range insts {
			if inst == nil {
				continue
			}
			network, _ := inst["network_id"].(string)
			inst["instance_id"] = InstanceID(r.ID, network)
			instances = append(instances, inst)
		}
		if merged == nil {
			merged = meta
		}
	}
	if merged == nil {
		return nil, fmt.Errorf("%w: unknown protocol %q", ErrNotFound, protocol)
	}
	merged["instances"], _ = json.Marshal(instances)
	return json.Marshal(merged)
}

// InstanceID names one network of one service, as /thirdparty/protocols
// announces it and /publicRooms takes it (third_party_instance_id).
func InstanceID(serviceID, networkID string) string { return serviceID + "|" + networkID }

// ParseInstanceID splits an instance ID into service and network.
func ParseInstanceID(instanceID string) (serviceID, networkID string, ok bool) {
	return strings.Cut(instanceID, "|")
}

// ThirdPartyLookup proxies a third-party lookup to the services: kind is
// "location" or "user". With a protocol, the services declaring it are
// asked GET /_matrix/app/v1/thirdparty/{kind}/{protocol} with the fields
// in query; without one (a reverse lookup by alias or userid), every
// service with a URL is asked GET /_matrix/app/v1/thirdparty/{kind}. The
// answers are concatenated. ErrNotFound means an unknown protocol.
func (s *Service) ThirdPartyLookup(ctx context.Context, kind, protocol string, query url.Values) ([]json.RawMessage, error) {
	out := []json.RawMessage{}
	if s == nil {
		if protocol != "" {
			return nil, fmt.Errorf("%w: unknown protocol %q", ErrNotFound, protocol)
		}
		return out, nil
	}
	path := "/thirdparty/" + kind
	if protocol != "" {
		path += "/" + url.PathEscape(protocol)
	}
	known := false
	for _, r := range s.regs {
		if r.URL == "" || protocol != "" && !r.HasProtocol(protocol) || protocol == "" && len(r.Protocols) == 0 {
			continue
		}
		known = true
		status, body, err := s.call(ctx, r, http.MethodGet, "/_matrix/app/v1"+path, "/_matrix/app/unstable"+path, query, nil, s.cfg.QueryTimeout)
		if err != nil || status != http.StatusOK {
			s.log.WithField("appservice", r.ID).WithField("path", path).WithField("status", status).WithError(err).
				Info("appservice: third-party lookup failed")
			continue
		}
		var list []json.RawMessage
		if json.Unmarshal(body, &list) != nil {
			s.log.WithField("appservice", r.ID).WithField("path", path).Info("appservice: third-party lookup answer is not a list")
			continue
		}
		out = append(out, list...)
	}
	if protocol != "" && !known {
		return nil, fmt.Errorf("%w: unknown protocol %q", ErrNotFound, protocol)
	}
	return out, nil
}

// SetRoomVisibility lists (public) or unlists a room in the directory a
// service keeps for one of its networks (PUT
// /directory/list/appservice/{networkId}/{roomId}). The public room
// directory reads it with PublishedRooms.
func (s *Service) SetRoomVisibility(ctx context.Context, r *Registration, networkID, roomID string, public bool) error {
	if _, err := s.db.GetRoom(ctx, roomID); errors.Is(err, storage.ErrNotFound) {
		return fmt.Errorf("%w: unknown room %s", ErrNotFound, roomID)
	} else if err != nil {
		return err
	}
	return s.db.SetAppServiceRoomPublished(ctx, r.ID, networkID, roomID, public)
}

// PublishedRooms lists the rooms in the directory of one network, named
// by its instance ID (third_party_instance_id of /publicRooms), or of
// every network of every service when instanceID is empty
// (include_all_networks).
func (s *Service) PublishedRooms(ctx context.Context, instanceID string) ([]string, error) {
	var service, network string
	if instanceID != "" {
		var ok bool
		if service, network, ok = ParseInstanceID(instanceID); !ok {
			return nil, fmt.Errorf("%w: unknown third_party_instance_id %q", ErrNotFound, instanceID)
		}
	}
	entries, err := s.db.AppServicePublishedRooms(ctx, service, network)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var out []string
	for _, e := range entries {
		if !seen[e.RoomID] {
			seen[e.RoomID] = true
			out = append(out, e.RoomID)
		}
	}
	return out, nil
}

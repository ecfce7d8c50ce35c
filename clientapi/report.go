package clientapi

import (
	"context"
	"errors"
	"net/http"
	"strconv"

	"github.com/gorilla/mux"

	"github.com/parley-chat/parley/homeserver/httputil"
	"github.com/parley-chat/parley/homeserver/reports"
	"github.com/parley-chat/parley/homeserver/users"
	"github.com/parley-chat/parley/matrix/id"
)

// reportBody is the body of the report endpoints.
type reportBody struct {
	Reason *string `json:"reason"`
}

// writeReportError maps the reports service's errors.
func writeReportError(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, reports.ErrNotFound) {
		httputil.WriteError(w, httputil.NotFound(err.Error()))
		return
	}
	writeRoomError(w, r, err)
}

// readReportReason reads the body of a report. The reason is optional when
// reporting an event, but required (it may be empty) for a room or a user.
func readReportReason(w http.ResponseWriter, r *http.Request, required bool) (string, bool) {
	var body reportBody
	if e := httputil.ReadJSON(r, &body); e != nil {
		httputil.WriteError(w, e)
		return "", false
	}
	if body.Reason == nil {
		if required {
			httputil.WriteError(w, httputil.BadJSON("reason is required (it may be empty)"))
			return "", false
		}
		return "", true
	}
	return *body.Reason, true
}

// writeReportResult answers {} once a report is filed, or its error.
func writeReportResult(w http.ResponseWriter, r *http.Request, err error) {
	if err != nil {
		writeReportError(w, r, err)
		return
	}
	httputil.WriteJSON(w, http.StatusOK, struct{}{})
}

// reportEvent is POST /rooms/{roomId}/report/{eventId}.
func (c *chatAPI) reportEvent(w http.ResponseWriter, r *http.Request, dev *users.Device) {
	reason, ok := readReportReason(w, r, false)
	if !ok {
		return
	}
	vars := mux.Vars(r)
	writeReportResult(w, r, c.cfg.Reports.ReportEvent(r.Context(), dev.UserID, vars["roomId"], vars["eventId"], reason))
}

// reportRoom is POST /rooms/{roomId}/report.
func (c *chatAPI) reportRoom(w http.ResponseWriter, r *http.Request, dev *users.Device) {
	c.reportTarget(w, r, dev, mux.Vars(r)["roomId"], checkRoomID, c.cfg.Reports.ReportRoom)
}

// reportUser is POST /users/{userId}/report.
func (c *chatAPI) reportUser(w http.ResponseWriter, r *http.Request, dev *users.Device) {
	c.reportTarget(w, r, dev, mux.Vars(r)["userId"], checkUserID, c.cfg.Reports.ReportUser)
}

// reportTarget files a report of a room or a user with file. The body is
// checked before the target's ID (check).
func (c *chatAPI) reportTarget(w http.ResponseWriter, r *http.Request, dev *users.Device, target string,
	check func(string) *httputil.Error, file func(ctx context.Context, reporter, target, reason string) error) {
	reason, ok := readReportReason(w, r, true)
	if !ok {
		return
	}
	if e := check(target); e != nil {
		httputil.WriteError(w, e)
		return
	}
	writeReportResult(w, r, file(r.Context(), dev.UserID, target, reason))
}

// checkRoomID and checkUserID check the target of a room or user report.
func checkRoomID(s string) *httputil.Error {
	if _, err := id.ParseRoomID(s); err != nil {
		return httputil.InvalidParam("invalid room ID")
	}
	return nil
}

func checkUserID(s string) *httputil.Error {
	if _, err := id.ParseUserID(s); err != nil {
		return httputil.InvalidParam("invalid user ID")
	}
	return nil
}

// reportJSON is a report as the admin API lists it.
type reportJSON struct {
	ID         int64  `json:"id"`
	ReceivedTS int64  `json:"received_ts"`
	Reporter   string `json:"reporter"`
	RoomID     string `json:"room_id,omitempty"`
	EventID    string `json:"event_id,omitempty"`
	TargetUser string `json:"target_user_id,omitempty"`
	Reason     string `json:"reason"`
}

// listReports is GET /_parley/admin/v1/reports?from=ID&limit=N, newest
// first, for server admins.
func (c *chatAPI) listReports(w http.ResponseWriter, r *http.Request, dev *users.Device) {
	if !dev.IsAdmin {
		httputil.WriteError(w, httputil.Forbidden("only server admins may read reports"))
		return
	}
	limit, e := queryInt(r, "limit", 100)
	if e != nil {
		httputil.WriteError(w, e)
		return
	}
	var before int64
	if s := r.URL.Query().Get("from"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 {
			httputil.WriteError(w, httputil.InvalidParam("from must be a token from next_token"))
			return
		}
		before = n
	}
	list, total, err := c.cfg.Reports.List(r.Context(), before, limit)
	if err != nil {
		writeReportError(w, r, err)
		return
	}
	out := make([]reportJSON, len(list))
	for i, rep := range list {
		out[i] = reportJSON{ID: rep.ID, ReceivedTS: rep.ReceivedTS, Reporter: rep.Reporter, RoomID: rep.RoomID,
			EventID: rep.EventID, TargetUser: rep.TargetUser, Reason: rep.Reason}
	}
	body := map[string]any{"reports": out, "total": total}
	if n := len(list); n > 0 && n == max(limit, 1) && list[n-1].ID > 1 {
		body["next_token"] = strconv.FormatInt(list[n-1].ID, 10)
	}
	httputil.WriteJSON(w, http.StatusOK, body)
}

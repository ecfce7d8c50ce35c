package clientapi

import (
	"net/http"

	"github.com/gorilla/mux"

	"github.com/parley-chat/parley/homeserver/httputil"
	"github.com/parley-chat/parley/homeserver/users"
)

// deviceJSON is a device as the device list shows it; unknown fields are
// left out.
type deviceJSON struct {
	DeviceID    string `json:"device_id"`
	DisplayName string `json:"display_name,omitempty"`
	LastSeenIP  string `json:"last_seen_ip,omitempty"`
	LastSeenTS  int64  `json:"last_seen_ts,omitempty"`
}

func toDeviceJSON(d users.DeviceInfo) deviceJSON {
	return deviceJSON{DeviceID: d.DeviceID, DisplayName: d.DisplayName, LastSeenIP: d.LastSeenIP, LastSeenTS: d.LastSeenTS}
}

// listDevices is GET /devices.
func (a *API) listDevices(w http.ResponseWriter, r *http.Request, dev *users.Device) {
	ds, err := a.users.Devices(r.Context(), dev)
	if err != nil {
		writeUsersError(w, r, err)
		return
	}
	out := make([]deviceJSON, len(ds))
	for i, d := range ds {
		out[i] = toDeviceJSON(d)
	}
	httputil.WriteJSON(w, http.StatusOK, map[string]any{"devices": out})
}

// getDevice is GET /devices/{deviceId}.
func (a *API) getDevice(w http.ResponseWriter, r *http.Request, dev *users.Device) {
	d, err := a.users.GetDevice(r.Context(), dev, mux.Vars(r)["deviceId"])
	if err != nil {
		writeUsersError(w, r, err)
		return
	}
	httputil.WriteJSON(w, http.StatusOK, toDeviceJSON(*d))
}

// updateDevice is PUT /devices/{deviceId}: renaming one of the user's
// devices. Creating devices this way is for application services only.
func (a *API) updateDevice(w http.ResponseWriter, r *http.Request, dev *users.Device) {
	var req struct {
		DisplayName *string `json:"display_name"`
	}
	if e := httputil.ReadJSON(r, &req); e != nil {
		httputil.WriteError(w, e)
		return
	}
	deviceID := mux.Vars(r)["deviceId"]
	var err error
	if req.DisplayName == nil {
		// Nothing to change, but an unknown device is still a 404.
		_, err = a.users.GetDevice(r.Context(), dev, deviceID)
	} else {
		err = a.users.RenameDevice(r.Context(), dev, deviceID, *req.DisplayName)
	}
	if err != nil {
		writeUsersError(w, r, err)
		return
	}
	httputil.WriteJSON(w, http.StatusOK, struct{}{})
}

// deleteDevice is DELETE /devices/{deviceId}, behind the user's password.
func (a *API) deleteDevice(w http.ResponseWriter, r *http.Request, dev *users.Device) {
	var req struct {
		Auth *users.AuthData `json:"auth"`
	}
	if e := readJSONOrEmpty(r, &req); e != nil {
		httputil.WriteError(w, e)
		return
	}
	deviceID := mux.Vars(r)["deviceId"]
	if !a.userInteractiveAuth(w, r, users.UIARequest{
		Action: "DELETE /devices/" + deviceID, Localpart: dev.Localpart, Flows: users.PasswordFlows, Auth: req.Auth,
	}) {
		return
	}
	if err := a.users.DeleteDevices(r.Context(), dev, []string{deviceID}); err != nil {
		writeUsersError(w, r, err)
		return
	}
	httputil.WriteJSON(w, http.StatusOK, struct{}{})
}

// deleteDevices is POST /delete_devices, behind the user's password.
func (a *API) deleteDevices(w http.ResponseWriter, r *http.Request, dev *users.Device) {
	var req struct {
		Devices *[]string       `json:"devices"`
		Auth    *users.AuthData `json:"auth"`
	}
	if e := httputil.ReadJSON(r, &req); e != nil {
		httputil.WriteError(w, e)
		return
	}
	if req.Devices == nil {
		httputil.WriteError(w, missingParam("devices is required"))
		return
	}
	if !a.userInteractiveAuth(w, r, users.UIARequest{
		Action: "POST /delete_devices", Localpart: dev.Localpart, Flows: users.PasswordFlows, Auth: req.Auth,
	}) {
		return
	}
	if err := a.users.DeleteDevices(r.Context(), dev, *req.Devices); err != nil {
		writeUsersError(w, r, err)
		return
	}
	httputil.WriteJSON(w, http.StatusOK, struct{}{})
}

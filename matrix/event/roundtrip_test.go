package event_test

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/parley-chat/parley/matrix/canonicaljson"
	"github.com/parley-chat/parley/matrix/event"
)

// roundTripProtos are events of the types the protocol treats specially.
func roundTripProtos(v event.RoomVersion) []event.ProtoEvent {
	info, _ := v.Info()
	createContent := `{"creator":"@alice:a.example","room_version":"` + string(v) + `"}`
	if info.CreatorFromSender {
		createContent = `{"room_version":"` + string(v) + `"}`
	}
	return []event.ProtoEvent{
		{Type: "m.room.create", StateKey: ptr(""), Sender: "@alice:a.example", Content: []byte(createContent), Depth: 1},
		{Type: "m.room.member", StateKey: ptr("@alice:a.example"), Sender: "@alice:a.example",
			Content: []byte(`{"membership":"join","displayname":"Alice \u00e9\ud83d\ude00"}`)},
		{Type: "m.room.power_levels", StateKey: ptr(""), Sender: "@alice:a.example",
			Content: []byte(`{"users":{"@alice:a.example":100},"users_default":0,"events":{"m.room.name":50},"invite":0,"notifications":{"room":50}}`)},
		{Type: "m.room.join_rules", StateKey: ptr(""), Sender: "@alice:a.example", Content: []byte(`{"join_rule":"invite"}`)},
		{Type: "m.room.message", Sender: "@alice:a.example",
			Content: []byte(`{"msgtype":"m.text","body":"hello <world> & \"friends\"\n","nested":{"b":[1,2,{"c":null}],"a":true}}`)},
		{Type: "m.room.redaction", Sender: "@alice:a.example", Redacts: fakeEventID(v, "target"), Content: []byte(`{"reason":"spam"}`)},
		{Type: "org.example.custom", StateKey: ptr("some key"), Sender: "@alice:a.example",
			Content: []byte(`{"k":-9007199254740991}`), Unsigned: []byte(`{"age":5,"transaction_id":"tx"}`)},
	}
}

func TestBuildRoundTripEveryVersion(t *testing.T) {
	keys := testKeys(map[string]ed25519.PrivateKey{testServer: testKey})
	for _, v := range event.KnownRoomVersions() {
		info, _ := v.Info()
		for _, p := range roundTripProtos(v) {
			t.Run("v"+string(v)+"/"+p.Type, func(t *testing.T) {
				ev := buildTestEvent(t, v, p)
				checkEventIDFormat(t, ev.EventID(), info)

				// The JSON is canonical and within the size limit.
				canon, err := canonicaljson.Options{Strict: info.StrictCanonicalJSON}.Canonicalize(ev.JSON())
				if err != nil || !bytes.Equal(canon, ev.JSON()) {
					t.Fatalf("built JSON is not canonical: %s (%v)", ev.JSON(), err)
				}

				// What another server receives parses to the same event.
				got, err := event.NewEventFromUntrustedJSON(ev.JSON(), v)
				if err != nil {
					t.Fatalf("NewEventFromUntrustedJSON: %v\n%s", err, ev.JSON())
				}
				if got.EventID() != ev.EventID() {
					t.Errorf("event ID %s after round trip, built %s", got.EventID(), ev.EventID())
				}
				if !got.ContentHashMatches() {
					t.Error("content hash does not match")
				}
				if err := event.VerifyEventSignatures(got, keys); err != nil {
					t.Errorf("VerifyEventSignatures: %v", err)
				}
				checkSameFields(t, got, ev)
				checkFormat(t, ev, p, info)

				// Tampering with content that redaction strips breaks the
				// content hash but not the ID or the signature, which cover
				// only the redacted event; the redacted form is what a
				// receiver then processes.
				if p.Type == "m.room.message" {
					tampered := setJSON(t, ev.JSON(), "content", `{"msgtype":"m.text","body":"forged"}`)
					bad, err := event.NewEventFromUntrustedJSON(tampered, v)
					if err != nil {
						t.Fatal(err)
					}
					if bad.ContentHashMatches() {
						t.Error("tampered content still matches the content hash")
					}
					if bad.EventID() != ev.EventID() {
						t.Error("tampering with redactable content changed the event ID")
					}
					if err := event.VerifyEventSignatures(bad, keys); err != nil {
						t.Errorf("signature over the redacted form no longer verifies: %v", err)
					}
					red, err := bad.Redacted()
					if err != nil {
						t.Fatal(err)
					}
					if string(red.Content()) != "{}" {
						t.Errorf("redacted content %s", red.Content())
					}
				}
				// Tampering with a key redaction keeps changes the reference
				// hash (for versions that derive IDs) and breaks the signature.
				tampered := setJSON(t, ev.JSON(), "depth", "8")
				bad, err := event.NewEventFromUntrustedJSON(tampered, v)
				if err != nil {
					t.Fatal(err)
				}
				if bad.ContentHashMatches() {
					t.Error("tampered depth still matches the content hash")
				}
				if info.EventIDFormat != event.EventIDFormatV1 && bad.EventID() == ev.EventID() {
					t.Error("tampering with depth kept the event ID")
				}
				if err := event.VerifyEventSignatures(bad, keys); !errors.Is(err, event.ErrBadSignature) {
					t.Errorf("tampered depth: VerifyEventSignatures = %v", err)
				}
				// unsigned is covered by nothing.
				withUnsigned := setJSON(t, ev.JSON(), "unsigned", `{"age":99999}`)
				ok, err := event.NewEventFromUntrustedJSON(withUnsigned, v)
				if err != nil {
					t.Fatal(err)
				}
				if ok.EventID() != ev.EventID() || !ok.ContentHashMatches() || event.VerifyEventSignatures(ok, keys) != nil {
					t.Error("changing unsigned affected the ID, hash or signature")
				}
			})
		}
	}
}

func checkEventIDFormat(t *testing.T, id string, info event.RoomVersionInfo) {
	t.Helper()
	switch info.EventIDFormat {
	case event.EventIDFormatV1:
		if !strings.HasPrefix(id, "$") || !strings.HasSuffix(id, ":"+testServer) {
			t.Errorf("v%s event ID %q is not $opaque:%s", info.ID, id, testServer)
		}
	case event.EventIDFormatV3:
		if len(id) != 44 || id[0] != '$' || strings.ContainsAny(id, "-_=:") {
			t.Errorf("v%s event ID %q is not $ + 43 standard base64 characters", info.ID, id)
		}
	case event.EventIDFormatV4:
		if len(id) != 44 || id[0] != '$' || strings.ContainsAny(id, "+/=:") {
			t.Errorf("v%s event ID %q is not $ + 43 URL-safe base64 characters", info.ID, id)
		}
	}
}

func checkSameFields(t *testing.T, got, want *event.Event) {
	t.Helper()
	if got.RoomID() != want.RoomID() || got.Sender() != want.Sender() || got.Type() != want.Type() ||
		!bytes.Equal(got.Content(), want.Content()) || got.Depth() != want.Depth() ||
		got.OriginServerTS() != want.OriginServerTS() || got.Redacts() != want.Redacts() ||
		!slices.Equal(got.PrevEventIDs(), want.PrevEventIDs()) || !slices.Equal(got.AuthEventIDs(), want.AuthEventIDs()) ||
		(got.StateKey() == nil) != (want.StateKey() == nil) || !bytes.Equal(got.Unsigned(), want.Unsigned()) {
		t.Errorf("fields differ after round trip:\n%s\n%s", got.JSON(), want.JSON())
	}
}

// checkFormat checks the version-specific layout Build chose.
func checkFormat(t *testing.T, ev *event.Event, p event.ProtoEvent, info event.RoomVersionInfo) {
	t.Helper()
	var top map[string]json.RawMessage
	if err := json.Unmarshal(ev.JSON(), &top); err != nil {
		t.Fatal(err)
	}
	_, hasEventID := top["event_id"]
	if hasEventID != (info.EventIDFormat == event.EventIDFormatV1) {
		t.Errorf("event_id present = %v in room version %s", hasEventID, info.ID)
	}
	if info.EventIDFormat == event.EventIDFormatV1 && len(p.PrevEvents) > 0 {
		var pairs [][2]json.RawMessage
		if err := json.Unmarshal(top["prev_events"], &pairs); err != nil {
			t.Errorf("prev_events are not pairs: %s", top["prev_events"])
		}
	}
	_, hasOrigin := top["origin"]
	if hasOrigin != (info.Redaction != event.RedactionV11) {
		t.Errorf("origin present = %v in room version %s", hasOrigin, info.ID)
	}
	isCreate := p.Type == "m.room.create" && p.StateKey != nil && *p.StateKey == ""
	if _, hasRoomID := top["room_id"]; hasRoomID == (isCreate && info.CreateEventIsRoomID) {
		t.Errorf("room_id present = %v", hasRoomID)
	}
	if isCreate {
		if string(top["auth_events"]) != "[]" || string(top["prev_events"]) != "[]" {
			t.Errorf("create event lists auth or prev events: %s", ev.JSON())
		}
		if info.CreateEventIsRoomID && ev.RoomID() != "!"+ev.EventID()[1:] {
			t.Errorf("v12 create event room ID %s, event ID %s", ev.RoomID(), ev.EventID())
		}
	}
	if p.Type == "m.room.redaction" {
		_, topRedacts := top["redacts"]
		var content struct {
			Redacts string `json:"redacts"`
		}
		_ = json.Unmarshal(top["content"], &content)
		if topRedacts == info.RedactsInContent || (content.Redacts != "") != info.RedactsInContent {
			t.Errorf("redacts in the wrong place for room version %s: %s", info.ID, ev.JSON())
		}
		if ev.Redacts() != p.Redacts {
			t.Errorf("Redacts() = %q, want %q", ev.Redacts(), p.Redacts)
		}
	}
}

// setJSON returns the JSON object with key set to the JSON value.
func setJSON(t testing.TB, obj []byte, key, value string) []byte {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(obj, &m); err != nil {
		t.Fatal(err)
	}
	if value == "" {
		delete(m, key)
	} else {
		m[key] = json.RawMessage(value)
	}
	out, err := canonicaljson.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestBuildRejects(t *testing.T) {
	base := func() event.ProtoEvent {
		return event.ProtoEvent{Type: "m.room.message", Sender: "@alice:a.example", Content: []byte(`{}`),
			PrevEvents: []string{}, AuthEvents: []string{}, Depth: 2}
	}
	tests := []struct {
		name    string
		version event.RoomVersion
		change  func(*event.ProtoEvent)
	}{
		{"v12 create with room_id", "12", func(p *event.ProtoEvent) {
			p.Type, p.StateKey, p.RoomID = "m.room.create", ptr(""), fakeRoomID("12")
		}},
		{"v12 event listing the create event", "12", func(p *event.ProtoEvent) {
			p.RoomID = fakeRoomID("12")
			p.AuthEvents = []string{"$" + p.RoomID[1:]}
		}},
		{"create with auth events", "11", func(p *event.ProtoEvent) {
			p.Type, p.StateKey, p.RoomID, p.AuthEvents = "m.room.create", ptr(""), "!r:a.example", []string{fakeEventID("11", "x")}
		}},
		{"missing room ID", "11", func(p *event.ProtoEvent) {}},
		{"float content in v6", "6", func(p *event.ProtoEvent) { p.RoomID, p.Content = "!r:a.example", []byte(`{"a":1.5}`) }},
		{"content not an object", "10", func(p *event.ProtoEvent) { p.RoomID, p.Content = "!r:a.example", []byte(`[]`) }},
		{"event ID in v3", "3", func(p *event.ProtoEvent) { p.RoomID, p.EventID = "!r:a.example", "$x:a.example" }},
		{"missing reference hash in v1", "1", func(p *event.ProtoEvent) {
			p.RoomID, p.PrevEvents = "!r:a.example", []string{"$p:a.example"}
		}},
		{"redacts on a message", "10", func(p *event.ProtoEvent) { p.RoomID, p.Redacts = "!r:a.example", "$x" }},
		{"conflicting content.redacts", "11", func(p *event.ProtoEvent) {
			p.RoomID, p.Type, p.Redacts = "!r:a.example", "m.room.redaction", fakeEventID("11", "a")
			p.Content = []byte(`{"redacts":"` + fakeEventID("11", "b") + `"}`)
		}},
		{"type too long", "10", func(p *event.ProtoEvent) { p.RoomID, p.Type = "!r:a.example", strings.Repeat("t", 256) }},
		{"bad sender", "10", func(p *event.ProtoEvent) { p.RoomID, p.Sender = "!r:a.example", "alice" }},
		{"too large", "10", func(p *event.ProtoEvent) {
			p.RoomID, p.Content = "!r:a.example", []byte(`{"body":"`+strings.Repeat("x", event.MaxEventSize)+`"}`)
		}},
		{"negative depth", "10", func(p *event.ProtoEvent) { p.RoomID, p.Depth = "!r:a.example", -1 }},
		{"v6 depth beyond 2^53-1", "6", func(p *event.ProtoEvent) { p.RoomID, p.Depth = "!r:a.example", 1<<53 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := base()
			tt.change(&p)
			if ev, err := p.Build(tt.version, testServer, testKeyID, testKey); err == nil {
				t.Errorf("Build succeeded: %s", ev.JSON())
			}
		})
	}
}

func TestBuildV1EventIDs(t *testing.T) {
	p := event.ProtoEvent{Type: "m.room.message", Sender: "@alice:a.example", RoomID: "!r:a.example", Content: []byte(`{}`), Depth: 1}
	a, err := p.Build("1", testServer, testKeyID, testKey)
	if err != nil {
		t.Fatal(err)
	}
	b, err := p.Build("1", testServer, testKeyID, testKey)
	if err != nil {
		t.Fatal(err)
	}
	if a.EventID() == b.EventID() {
		t.Error("two builds got the same random event ID")
	}
	p.EventID = "$chosen:a.example"
	c, err := p.Build("2", testServer, testKeyID, testKey)
	if err != nil || c.EventID() != "$chosen:a.example" {
		t.Errorf("chosen event ID: %v, %v", c, err)
	}
	// Reference hashes of real events make the v1 reference pairs.
	ref, err := a.ReferenceHash()
	if err != nil {
		t.Fatal(err)
	}
	p.EventID = ""
	p.PrevEvents = []string{a.EventID()}
	p.ReferenceHashes = map[string]string{a.EventID(): b64(ref[:])}
	d, err := p.Build("1", testServer, testKeyID, testKey)
	if err != nil {
		t.Fatal(err)
	}
	if want := `[["` + a.EventID() + `",{"sha256":"` + b64(ref[:]) + `"}]]`; !strings.Contains(string(d.JSON()), `"prev_events":`+want) {
		t.Errorf("prev_events not %s in %s", want, d.JSON())
	}
}

package event_test

import (
	"crypto/ed25519"
	"testing"

	"github.com/parley-chat/parley/matrix/event"
)

// benchProto is a typical message event: a few hundred bytes of content.
func benchProto() event.ProtoEvent {
	return event.ProtoEvent{
		Type:   "m.room.message",
		Sender: "@alice:a.example",
		Content: []byte(`{"msgtype":"m.text","body":"Hello, this is a fairly ordinary message with some text in it.",` +
			`"format":"org.matrix.custom.html","formatted_body":"<p>Hello, this is a <b>fairly</b> ordinary message.</p>",` +
			`"m.relates_to":{"m.in_reply_to":{"event_id":"$abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"}}}`),
	}
}

const benchVersion event.RoomVersion = "12"

// BenchmarkBuildEvent measures creating a local event end to end: layout,
// canonical JSON, content hash, redaction, signature, validation and ID.
func BenchmarkBuildEvent(b *testing.B) {
	p := benchProto()
	p.RoomID = fakeRoomID(benchVersion)
	p.PrevEvents = []string{fakeEventID(benchVersion, "p")}
	p.AuthEvents = []string{fakeEventID(benchVersion, "a1"), fakeEventID(benchVersion, "a2"), fakeEventID(benchVersion, "a3")}
	p.Depth, p.OriginServerTS = 10, 1700000000000
	b.ReportAllocs()
	for b.Loop() {
		if _, err := p.Build(benchVersion, testServer, testKeyID, testKey); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSignEvent measures adding one signature to an event JSON.
func BenchmarkSignEvent(b *testing.B) {
	ev := buildTestEvent(b, benchVersion, benchProto())
	info := ev.Version()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := event.SignEvent("b.example", testKeyID, keyB, ev.JSON(), info); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyEventSignatures measures checking the signatures of a
// parsed event (one server, one key).
func BenchmarkVerifyEventSignatures(b *testing.B) {
	ev := buildTestEvent(b, benchVersion, benchProto())
	pub := testKey.Public().(ed25519.PublicKey)
	keys := func(string, string, int64) (ed25519.PublicKey, error) { return pub, nil }
	b.ReportAllocs()
	for b.Loop() {
		if err := event.VerifyEventSignatures(ev, keys); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkComputeEventID measures deriving the event ID from raw JSON:
// canonicalisation, redaction and SHA-256.
func BenchmarkComputeEventID(b *testing.B) {
	ev := buildTestEvent(b, benchVersion, benchProto())
	info := ev.Version()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := event.ComputeEventID(ev.JSON(), info); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkNewEventFromUntrustedJSON measures the federation parser: strict
// canonical JSON, field validation, content hash and event ID.
func BenchmarkNewEventFromUntrustedJSON(b *testing.B) {
	ev := buildTestEvent(b, benchVersion, benchProto())
	b.ReportAllocs()
	b.SetBytes(int64(len(ev.JSON())))
	for b.Loop() {
		if _, err := event.NewEventFromUntrustedJSON(ev.JSON(), benchVersion); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRedact measures the redaction algorithm on raw JSON.
func BenchmarkRedact(b *testing.B) {
	ev := buildTestEvent(b, benchVersion, benchProto())
	info := ev.Version()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := event.Redact(ev.JSON(), info); err != nil {
			b.Fatal(err)
		}
	}
}

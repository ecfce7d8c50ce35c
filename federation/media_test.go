package federation_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/crypto/attachment"
	mevent "maunium.net/go/mautrix/event"
)

// TestRemoteMediaOverFederation: a user on hs2 downloads media uploaded on
// hs1; hs2 fetches it over federation once and then serves it from its
// cache, also after hs1 is gone.
func TestRemoteMediaOverFederation(t *testing.T) {
	hs1, hs2, alice, bob := twoServers(t)
	ctx := context.Background()
	content := bytes.Repeat([]byte("parley media "), 1000)
	up, err := alice.UploadBytesWithName(ctx, content, "text/plain", "notes.txt")
	if err != nil {
		t.Fatal(err)
	}
	download := func() (int, []byte) {
		req, _ := http.NewRequest("GET", hs2.ClientURL+"/_matrix/client/v1/media/download/hs1.test/"+up.ContentURI.FileID, nil)
		req.Header.Set("Authorization", "Bearer "+bob.AccessToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	if status, body := download(); status != 200 || !bytes.Equal(body, content) {
		t.Fatalf("remote download through hs2: %d, %d bytes", status, len(body))
	}
	hs1.Stop()
	if status, body := download(); status != 200 || !bytes.Equal(body, content) {
		t.Fatalf("cached remote download with hs1 down: %d, %d bytes", status, len(body))
	}
	// Unknown remote media is 404, not an error page.
	req, _ := http.NewRequest("GET", hs2.ClientURL+"/_matrix/client/v1/media/download/hs2.test/doesnotexist", nil)
	req.Header.Set("Authorization", "Bearer "+bob.AccessToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Fatalf("unknown media: %d", resp.StatusCode)
	}
}

// TestEncryptedAttachmentAcrossServers: alice on hs1 encrypts a file with
// mautrix's attachment crypto, uploads the ciphertext and shares the key in
// an m.file event of a room bob (hs2) is in; bob's client takes the event
// from its own server's /sync, downloads the ciphertext through hs2 (which
// fetches it over federation) and decrypts it.
func TestEncryptedAttachmentAcrossServers(t *testing.T) {
	_, _, alice, bob := twoServers(t)
	ctx := context.Background()
	bobSync := &syncer{t: t, cli: bob}
	bobSync.waitFor("initial", func(*mautrix.RespSync) bool { return true })
	room, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bob.JoinRoom(ctx, room.RoomID.String(), &mautrix.ReqJoinRoom{Via: []string{"hs1.test"}}); err != nil {
		t.Fatal(err)
	}

	plaintext := bytes.Repeat([]byte("confidential minutes "), 500)
	file := attachment.NewEncryptedFile()
	ciphertext := file.Encrypt(plaintext)
	if bytes.Contains(ciphertext, []byte("confidential")) {
		t.Fatal("the upload is not encrypted")
	}
	up, err := alice.UploadBytes(ctx, ciphertext, "application/octet-stream")
	if err != nil {
		t.Fatal(err)
	}
	content := &mevent.MessageEventContent{MsgType: mevent.MsgFile, Body: "minutes.txt",
		File: &mevent.EncryptedFileInfo{EncryptedFile: *file, URL: up.ContentURI.CUString()}}
	if _, err := alice.SendMessageEvent(ctx, room.RoomID, mevent.EventMessage, content); err != nil {
		t.Fatal(err)
	}

	var got *mevent.EncryptedFileInfo
	bobSync.waitFor("the file event", func(r *mautrix.RespSync) bool {
		for _, ev := range r.Rooms.Join[room.RoomID].Timeline.Events {
			if ev.Type == mevent.EventMessage {
				_ = ev.Content.ParseRaw(ev.Type)
				if m := ev.Content.AsMessage(); m.MsgType == mevent.MsgFile && m.File != nil {
					got = m.File
					return true
				}
			}
		}
		return false
	})
	mxc, err := got.URL.Parse()
	if err != nil {
		t.Fatal(err)
	}
	data, err := bob.DownloadBytes(ctx, mxc)
	if err != nil {
		t.Fatalf("bob downloads through hs2: %v", err)
	}
	decrypted, err := got.Decrypt(data)
	if err != nil {
		t.Fatalf("decrypting: %v", err)
	}
	if !bytes.Equal(decrypted, plaintext) {
		t.Fatal("the decrypted file differs")
	}
}

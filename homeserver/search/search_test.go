package search

import (
	"encoding/json"
	"reflect"
	"testing"
)

func TestWords(t *testing.T) {
	for term, want := range map[string][]string{
		"Martians and men":         {"martians", "and", "men"},
		"  \"quoted\" OR -minus* ": {"quoted", "or", "minus"},
		"Crème brûlée, crème!":     {"crème", "brûlée"},
		"*&^%":                     nil,
		"日本語 text":                 {"日本語", "text"},
	} {
		if got := Words(term); !reflect.DeepEqual(got, want) {
			t.Errorf("Words(%q) = %q, want %q", term, got, want)
		}
	}
	long := ""
	for range 40 {
		long += "w "
	}
	if got := Words(long); len(got) != 1 {
		t.Errorf("repeated words: %q", got)
	}
}

func TestSearchableText(t *testing.T) {
	empty := ""
	for _, c := range []struct {
		eventType string
		stateKey  *string
		content   string
		key, text string
	}{
		{"m.room.message", nil, `{"body":"hello","msgtype":"m.text"}`, KeyBody, "hello"},
		{"m.room.message", &empty, `{"body":"a state message"}`, "", ""},
		{"m.room.message", nil, `{"body":42}`, KeyBody, ""},
		{"m.room.name", &empty, `{"name":"Room"}`, KeyName, "Room"},
		{"m.room.topic", &empty, `{"topic":"Plain","m.topic":{"m.text":[{"mimetype":"text/html","body":"<b>x</b>"},{"body":"Rich plain"}]}}`, KeyTopic, "Plain\nRich plain"},
		{"m.room.encrypted", nil, `{"ciphertext":"..."}`, "", ""},
	} {
		key, text := searchableText(c.eventType, c.stateKey, json.RawMessage(c.content))
		if key != c.key || text != c.text {
			t.Errorf("%s %s: %q %q, want %q %q", c.eventType, c.content, key, text, c.key, c.text)
		}
	}
}

func TestCursor(t *testing.T) {
	c := cursor{Recent: true, Before: 42, Term: "x"}
	got, err := decodeCursor(c.encode())
	if err != nil || got != c {
		t.Fatalf("round trip: %+v %v", got, err)
	}
	if _, err := decodeCursor("!!"); err == nil {
		t.Fatal("garbage accepted")
	}
}

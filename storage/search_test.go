package storage

import (
	"context"
	"strings"
	"testing"
)

func TestEngineBlocks(t *testing.T) {
	sql := "CREATE TABLE a (x INT);\n-- engine: postgres\nPG ONLY;\n-- engine: sqlite\nSQLITE ONLY;\n-- engine: all\nCREATE TABLE b (y INT);\n"
	pg, lite := engineBlocks("postgres", sql), engineBlocks("sqlite", sql)
	if !strings.Contains(pg, "PG ONLY") || strings.Contains(pg, "SQLITE ONLY") || !strings.Contains(pg, "TABLE b") {
		t.Fatalf("postgres: %q", pg)
	}
	if strings.Contains(lite, "PG ONLY") || !strings.Contains(lite, "SQLITE ONLY") || !strings.Contains(lite, "TABLE a") {
		t.Fatalf("sqlite: %q", lite)
	}
	if plain := "CREATE TABLE c (z INT);"; engineBlocks("sqlite", plain) != plain {
		t.Fatal("a migration without blocks changed")
	}
}

// TestFullTextSearch runs the same searches against each engine's
// full-text index: whole words, prefixes, several words, stemming, rooms
// bounded by a leave, keys, ranking, recency paging and deletion.
func TestFullTextSearch(t *testing.T) {
	ctx := context.Background()
	eachEngine(t, func(t *testing.T, db *DB) {
		docs := []SearchDoc{
			{EventID: "$1", RoomID: "!a", Key: "content.body", StreamPos: 1, Text: "The Martians have landed"},
			{EventID: "$2", RoomID: "!a", Key: "content.body", StreamPos: 2, Text: "martians martians everywhere, martians"},
			{EventID: "$3", RoomID: "!b", Key: "content.body", StreamPos: 3, Text: "running dogs and a martian"},
			{EventID: "$4", RoomID: "!a", Key: "content.name", StreamPos: 4, Text: "Mars base"},
			{EventID: "$5", RoomID: "!a", Key: "content.body", StreamPos: 5, Text: "nothing to see"},
		}
		rows := make([]*EventRow, len(docs))
		for i, d := range docs {
			rows[i] = &EventRow{EventID: d.EventID, RoomID: d.RoomID, Type: "m.room.message", Sender: "@a:x", StreamPos: d.StreamPos, JSON: "{}"}
		}
		if err := db.InsertEvents(ctx, db, rows); err != nil {
			t.Fatal(err)
		}
		if err := db.IndexSearchDocs(ctx, docs); err != nil {
			t.Fatal(err)
		}
		if err := db.IndexSearchDocs(ctx, docs[:1]); err != nil {
			t.Fatalf("indexing twice: %v", err)
		}
		both := []SearchRoom{{RoomID: "!a"}, {RoomID: "!b"}}
		ids := func(q SearchQuery) []string {
			t.Helper()
			hits, err := db.SearchEvents(ctx, q)
			if err != nil {
				t.Fatal(err)
			}
			var out []string
			for _, h := range hits {
				out = append(out, h.Event.EventID)
			}
			return out
		}
		check := func(what string, got []string, want ...string) {
			t.Helper()
			if strings.Join(got, ",") != strings.Join(want, ",") {
				t.Errorf("%s: %v, want %v", what, got, want)
			}
		}
		check("recent", ids(SearchQuery{Words: []string{"martians"}, Rooms: both, Recent: true, Limit: 10}), "$3", "$2", "$1")
		check("ranked", ids(SearchQuery{Words: []string{"martians"}, Rooms: both, Limit: 10})[:1], "$2")
		check("prefix", ids(SearchQuery{Words: []string{"mart"}, Rooms: both, Recent: true, Limit: 10}), "$3", "$2", "$1")
		check("stemming", ids(SearchQuery{Words: []string{"runs"}, Rooms: both, Limit: 10}), "$3")
		check("all words", ids(SearchQuery{Words: []string{"martians", "landed"}, Rooms: both, Limit: 10}), "$1")
		check("a left room", ids(SearchQuery{Words: []string{"martians"}, Rooms: []SearchRoom{{RoomID: "!a", MaxPos: 1}, {RoomID: "!b"}}, Recent: true, Limit: 10}), "$3", "$1")
		check("other keys", ids(SearchQuery{Words: []string{"base"}, Rooms: both, Keys: []string{"content.body"}, Limit: 10}))
		check("keys", ids(SearchQuery{Words: []string{"base"}, Rooms: both, Keys: []string{"content.name"}, Limit: 10}), "$4")
		check("page", ids(SearchQuery{Words: []string{"martians"}, Rooms: both, Recent: true, Before: 3, Limit: 1}), "$2")
		if n, err := db.CountSearch(ctx, SearchQuery{Words: []string{"martians"}, Rooms: both, Before: 3}); err != nil || n != 3 {
			t.Errorf("count %d %v", n, err)
		}
		if err := db.DeleteSearchDocs(ctx, []string{"$2", "$nope"}); err != nil {
			t.Fatal(err)
		}
		check("after a deletion", ids(SearchQuery{Words: []string{"martians"}, Rooms: both, Recent: true, Limit: 10}), "$3", "$1")
	})
}

package ignored

import (
	"reflect"
	"testing"
)

func TestParse(t *testing.T) {
	s := Parse([]byte(`{"ignored_users":{"@bob:x":{},"@carol:y":{},"not-a-user":{}}}`))
	if !reflect.DeepEqual(s.List(), []string{"@bob:x", "@carol:y"}) {
		t.Fatalf("list %v", s.List())
	}
	if !s.Hides("@bob:x", false) || s.Hides("@bob:x", true) || s.Hides("@dave:x", false) {
		t.Fatal("Hides: state events stay, others' events stay")
	}
	for _, bad := range []string{`{}`, `{"ignored_users":[]}`, `nope`} {
		if len(Parse([]byte(bad))) != 0 {
			t.Errorf("%s ignores someone", bad)
		}
	}
	var none Set
	if none.Hides("@bob:x", false) || len(none.List()) != 0 {
		t.Fatal("an empty set hides")
	}
	if lp, ok := localpartOf("@alice:here", "here"); !ok || lp != "alice" {
		t.Fatal("local user")
	}
	if _, ok := localpartOf("@alice:elsewhere", "here"); ok {
		t.Fatal("a remote user has account data here")
	}
}

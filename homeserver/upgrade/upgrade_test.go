package upgrade

import (
	"encoding/json"
	"reflect"
	"testing"
)

func TestToInt(t *testing.T) {
	for raw, want := range map[string]int64{`50`: 50, `"75"`: 75, `-10`: -10, `100.0`: 100} {
		if got, ok := toInt(json.RawMessage(raw)); !ok || got != want {
			t.Errorf("toInt(%s) = %d %v", raw, got, ok)
		}
	}
	for _, raw := range []string{`1.5`, `"x"`, `null`, `{}`, ``} {
		if _, ok := toInt(json.RawMessage(raw)); ok {
			t.Errorf("toInt(%s) accepted", raw)
		}
	}
}

func TestIntMap(t *testing.T) {
	got := intMap(json.RawMessage(`{"@a:x":"100","@b:x":50,"@c:x":"lots"}`))
	if !reflect.DeepEqual(got, map[string]int64{"@a:x": 100, "@b:x": 50}) {
		t.Fatalf("intMap: %v", got)
	}
}

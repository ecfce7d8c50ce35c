package canonicaljson

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"os"
	"strings"
	"testing"
)

var strict = Options{Strict: true}

// TestSpecExamples runs every example from the "Canonical JSON" section of
// the spec appendices, inputs copied with their original formatting.
func TestSpecExamples(t *testing.T) {
	tests := []struct {
		name, in, want string
		strictErr      error // nil if strict mode gives the same output
	}{
		{"empty object", `{}`, `{}`, nil},
		{"two members", `{
    "one": 1,
    "two": "Two"
}`, `{"one":1,"two":"Two"}`, nil},
		{"reordered", `{
    "b": "2",
    "a": "1"
}`, `{"a":"1","b":"2"}`, nil},
		{"reordered compact", `{"b":"2","a":"1"}`, `{"a":"1","b":"2"}`, nil},
		{"nested", `{
    "auth": {
        "success": true,
        "mxid": "@john.doe:example.com",
        "profile": {
            "display_name": "John Doe",
            "three_pids": [
                {
                    "medium": "email",
                    "address": "john.doe@example.org"
                },
                {
                    "medium": "msisdn",
                    "address": "123456789"
                }
            ]
        }
    }
}`, `{"auth":{"mxid":"@john.doe:example.com","profile":{"display_name":"John Doe","three_pids":[{"address":"john.doe@example.org","medium":"email"},{"address":"123456789","medium":"msisdn"}]},"success":true}}`, nil},
		{"non-ASCII value", `{
    "a": "日本語"
}`, `{"a":"日本語"}`, nil},
		{"non-ASCII keys", `{
    "本": 2,
    "日": 1
}`, `{"日":1,"本":2}`, nil},
		{"unicode escape", `{
    "a": "\u65E5"
}`, `{"a":"日"}`, nil},
		{"null", `{
    "a": null
}`, `{"a":null}`, nil},
		// The spec maps -0 and 1e10 to integers. In strict mode (room
		// versions 6+) 1e10 is a float and rejected, as MSC2540 intends and
		// as other servers do; -0 is an integer literal and accepted.
		{"negative zero and exponent", `{
    "a": -0,
    "b": 1e10
}`, `{"a":0,"b":10000000000}`, ErrFloat},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Canonicalize([]byte(tt.in))
			if err != nil {
				t.Fatalf("Canonicalize: %v", err)
			}
			if string(got) != tt.want {
				t.Errorf("Canonicalize:\n got %s\nwant %s", got, tt.want)
			}
			got, err = strict.Canonicalize([]byte(tt.in))
			if tt.strictErr != nil {
				if !errors.Is(err, tt.strictErr) {
					t.Errorf("strict: got %v, want %v", err, tt.strictErr)
				}
				return
			}
			if err != nil || string(got) != tt.want {
				t.Errorf("strict: got %s, %v; want %s", got, err, tt.want)
			}
		})
	}
}

func TestStrings(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"plain", `"abc"`, `"abc"`},
		{"empty", `""`, `""`},
		{"quote and backslash", `"a\"b\\c"`, `"a\"b\\c"`},
		{"short escapes kept", `"\b\f\n\r\t"`, `"\b\f\n\r\t"`},
		{"short escapes from \\u", `"\u0008\u000C\u000a\u000D\u0009"`, `"\b\f\n\r\t"`},
		{"other controls lower-case hex", `"\u0000\u0001\u001F\u001b\u000B\u000e"`, `"\u0000\u0001\u001f\u001b\u000b\u000e"`},
		{"solidus unescaped", `"a\/b/c"`, `"a/b/c"`},
		{"escaped quote via \\u", `"\u0022\u005C"`, `"\"\\"`},
		{"DEL literal", `"\u007f"`, "\"\x7f\""},
		{"raw DEL literal", "\"\x7f\"", "\"\x7f\""},
		{"HTML characters literal", `"\u003c\u003e\u0026<>&"`, `"<>&<>&"`},
		{"line separators literal", `"\u2028\u2029"`, "\"\u2028\u2029\""},
		{"raw line separators literal", "\"\u2028\u2029\"", "\"\u2028\u2029\""},
		{"BMP escape", `"\u00e9\u00C9"`, `"éÉ"`},
		{"surrogate pair", `"\ud83d\ude80"`, `"🚀"`},
		{"surrogate pair upper hex", `"\uD83D\uDE80"`, `"🚀"`},
		{"raw astral", `"🚀"`, `"🚀"`},
		{"replacement character is valid", `"\ufffd` + "\ufffd" + `"`, "\"\ufffd\ufffd\""},
		{"noncharacter is valid", `"\uffff"`, "\"\uffff\""},
		{"mixed", `"x\ty\u00e9\"z\/"`, `"x\tyé\"z/"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, o := range []Options{{}, strict} {
				got, err := o.Canonicalize([]byte(tt.in))
				if err != nil {
					t.Fatalf("%+v: %v", o, err)
				}
				if string(got) != tt.want {
					t.Errorf("%+v:\n got %q\nwant %q", o, got, tt.want)
				}
			}
		})
	}
}

func TestKeyOrder(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"ASCII byte order, upper before lower", `{"b":1,"B":2,"a":3,"_":4,"0":5}`, `{"0":5,"B":2,"_":4,"a":3,"b":1}`},
		{"prefix sorts first", `{"ab":1,"a":2,"":3}`, `{"":3,"a":2,"ab":1}`},
		{"non-ASCII after ASCII", `{"é":1,"z":2}`, `{"z":2,"é":1}`},
		// Code point order, not UTF-16 code unit order: U+E000 < U+1F680,
		// although UTF-16 would put the surrogate pair (0xD83D...) first.
		{"astral after private use", `{"🚀":1,"":2}`, `{"":2,"🚀":1}`},
		{"escaped key compared by value", `{"\u00e9":1,"\u0065":2}`, `{"e":2,"é":1}`},
		// A newline key escapes to \n, whose backslash (0x5C) sorts after
		// "A" (0x41), but the key itself (0x0A) sorts before it.
		{"control key sorts by value", `{"A":1,"\n":2}`, `{"\n":2,"A":1}`},
		{"quote key", `{"a":1,"\"":2,"\\":3}`, `{"\"":2,"\\":3,"a":1}`},
		{"nested objects sorted independently", `{"z":{"y":1,"x":[{"b":1,"a":2}]},"a":{}}`, `{"a":{},"z":{"x":[{"a":2,"b":1}],"y":1}}`},
		{"already sorted", `{"a":1,"b":{"c":2,"d":3}}`, `{"a":1,"b":{"c":2,"d":3}}`},
		{"reverse of many", `{"j":0,"i":1,"h":2,"g":3,"f":4,"e":5,"d":6,"c":7,"b":8,"a":9}`, `{"a":9,"b":8,"c":7,"d":6,"e":5,"f":4,"g":3,"h":2,"i":1,"j":0}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, o := range []Options{{}, strict} {
				got, err := o.Canonicalize([]byte(tt.in))
				if err != nil {
					t.Fatalf("%+v: %v", o, err)
				}
				if string(got) != tt.want {
					t.Errorf("%+v:\n got %s\nwant %s", o, got, tt.want)
				}
			}
		})
	}
}

func TestDuplicateKeys(t *testing.T) {
	tests := []struct {
		name, in, lenient string
		offset            int
		path              string
	}{
		{"simple", `{"a":1,"a":2}`, `{"a":2}`, 7, "/a"},
		{"last wins with others", `{"a":1,"b":0,"a":2,"c":0}`, `{"a":2,"b":0,"c":0}`, 13, "/a"},
		{"three times", `{"a":1,"a":2,"a":3}`, `{"a":3}`, 7, "/a"},
		{"escaped equal", `{"a":1,"\u0061":2}`, `{"a":2}`, 7, "/a"},
		{"nested", `{"x":[{"k":{},"k":[]}]}`, `{"x":[{"k":[]}]}`, 14, "/x/0/k"},
		{"different values", `{"a":{"b":1},"a":"s"}`, `{"a":"s"}`, 13, "/a"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Canonicalize([]byte(tt.in))
			if err != nil || string(got) != tt.lenient {
				t.Errorf("lenient: got %s, %v; want %s", got, err, tt.lenient)
			}
			_, err = strict.Canonicalize([]byte(tt.in))
			var e *Error
			if !errors.As(err, &e) || !errors.Is(err, ErrDuplicateKey) {
				t.Fatalf("strict: got %v, want ErrDuplicateKey", err)
			}
			if e.Offset != tt.offset || e.Path != tt.path {
				t.Errorf("strict: offset %d path %q, want %d %q (%v)", e.Offset, e.Path, tt.offset, tt.path, err)
			}
		})
	}
}

func TestNumbers(t *testing.T) {
	tests := []struct {
		in, lenient string
		strictErr   error // nil: strict output equals lenient output
	}{
		{"0", "0", nil},
		{"-0", "0", nil},
		{"7", "7", nil},
		{"-7", "-7", nil},
		{"9007199254740991", "9007199254740991", nil},
		{"-9007199254740991", "-9007199254740991", nil},
		{"999999999999999", "999999999999999", nil},
		{"9007199254740992", "9007199254740992", ErrIntegerRange},
		{"-9007199254740992", "-9007199254740992", ErrIntegerRange},
		{"10000000000000000", "10000000000000000", ErrIntegerRange},
		// Big integers survive lenient mode digit for digit.
		{"123456789012345678901234567890", "123456789012345678901234567890", ErrIntegerRange},
		{"1.0", "1", ErrFloat},
		{"-0.0", "0", ErrFloat},
		{"1.5", "1.5", ErrFloat},
		{"-1.25", "-1.25", ErrFloat},
		{"0.1", "0.1", ErrFloat},
		{"1e10", "10000000000", ErrFloat},
		{"1E10", "10000000000", ErrFloat},
		{"1e+10", "10000000000", ErrFloat},
		{"25e-1", "2.5", ErrFloat},
		{"1e20", "100000000000000000000", ErrFloat},
		{"1e21", "1e+21", ErrFloat},
		{"1.5e300", "1.5e+300", ErrFloat},
		{"0.000001", "0.000001", ErrFloat},
		{"1e-7", "1e-7", ErrFloat},
		{"-1.2345e-10", "-1.2345e-10", ErrFloat},
		{"123456789012345678.0", "123456789012345680", ErrFloat},
		{"0.30000000000000004", "0.30000000000000004", ErrFloat},
		{"1e-400", "0", ErrFloat},
		{"-1e-400", "0", ErrFloat},
		{"5e-324", "5e-324", ErrFloat},
		{"1.7976931348623157e308", "1.7976931348623157e+308", ErrFloat},
		{"1e400", "", ErrFloat},
		{"-1e400", "", ErrFloat},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := Canonicalize([]byte(tt.in))
			if tt.lenient == "" {
				if !errors.Is(err, ErrNumberOverflow) {
					t.Errorf("lenient: got %s, %v; want ErrNumberOverflow", got, err)
				}
			} else if err != nil || string(got) != tt.lenient {
				t.Errorf("lenient: got %s, %v; want %s", got, err, tt.lenient)
			}
			got, err = strict.Canonicalize([]byte(tt.in))
			if tt.strictErr != nil {
				if !errors.Is(err, tt.strictErr) {
					t.Errorf("strict: got %s, %v; want %v", got, err, tt.strictErr)
				}
			} else if err != nil || string(got) != tt.lenient {
				t.Errorf("strict: got %s, %v; want %s", got, err, tt.lenient)
			}
		})
	}
}

// TestNumbersIdempotent checks that formatted floats parse back to the same
// text, which signature verification of re-serialised events relies on.
func TestNumbersIdempotent(t *testing.T) {
	for _, in := range []string{"1e21", "1e-7", "123456789012345678.0", "5e-324", "1.7976931348623157e308", "-0.5", "1e100", "4.35e-6", "1234.5678e3"} {
		once, err := Canonicalize([]byte(in))
		if err != nil {
			t.Fatal(err)
		}
		twice, err := Canonicalize(once)
		if err != nil || string(twice) != string(once) {
			t.Errorf("%s: %s then %s, %v", in, once, twice, err)
		}
	}
}

func TestWhitespaceAndLiterals(t *testing.T) {
	in := " \t\r\n[ true , false,null ,\n{ \"a\" : [ ] , \"b\" :{ } } ] \n"
	want := `[true,false,null,{"a":[],"b":{}}]`
	for _, o := range []Options{{}, strict} {
		got, err := o.Canonicalize([]byte(in))
		if err != nil || string(got) != want {
			t.Errorf("%+v: got %s, %v; want %s", o, got, err, want)
		}
	}
	for _, in := range []string{`"top-level string"`, `12`, `null`, `true`, `[]`} {
		got, err := Canonicalize([]byte(in))
		if err != nil || string(got) != in {
			t.Errorf("%s: got %s, %v", in, got, err)
		}
	}
}

func TestInvalidJSON(t *testing.T) {
	tests := []struct {
		name, in string
		offset   int
	}{
		{"empty", ``, 0},
		{"only space", `   `, 3},
		{"bare word", `nul`, 0},
		{"capitalised literal", `True`, 0},
		{"trailing data", `{} {}`, 3},
		{"trailing garbage after literal", `truex`, 4},
		{"unclosed object", `{"a":1`, 6},
		{"unclosed array", `[1,2`, 4},
		{"trailing comma object", `{"a":1,}`, 7},
		{"trailing comma array", `[1,]`, 3},
		{"missing colon", `{"a" 1}`, 5},
		{"missing value", `{"a":}`, 5},
		{"non-string key", `{1:2}`, 1},
		{"single quotes", `{'a':1}`, 1},
		{"leading zero", `01`, 1},
		{"negative leading zero", `-01`, 2},
		{"lone minus", `-`, 1},
		{"plus sign", `+1`, 0},
		{"dot without digits", `1.`, 2},
		{"leading dot", `.5`, 0},
		{"exponent without digits", `1e`, 2},
		{"exponent sign without digits", `1e+`, 3},
		{"NaN", `NaN`, 0},
		{"Infinity", `-Infinity`, 1},
		{"hex number", `0x10`, 1},
		{"unterminated string", `"abc`, 0},
		{"raw newline in string", "\"a\nb\"", 2},
		{"raw NUL in string", "\"\x00\"", 1},
		{"invalid escape", `"\a"`, 1},
		{"escaped single quote", `"\'"`, 1},
		{"short \\u", `"\u12"`, 1},
		{"bad hex", `"\u12g4"`, 1},
		{"lone high surrogate", `"\ud800"`, 1},
		{"lone high surrogate then text", `"\ud800abcdef"`, 1},
		{"lone low surrogate", `"\udc00"`, 1},
		{"high then non-low escape", `"\ud800\u0041"`, 1},
		{"two highs", `"\ud800\ud800"`, 1},
		{"invalid UTF-8 byte", "\"\xff\"", 1},
		{"truncated UTF-8", "\"\xe6\x97\"", 1},
		{"overlong UTF-8", "\"\xc0\xaf\"", 1},
		{"UTF-8 encoded surrogate", "\"\xed\xa0\x80\"", 1},
		{"invalid UTF-8 in key", "{\"\xff\":1}", 2},
		{"BOM", "\xef\xbb\xbf{}", 0},
		{"comment", `{} // x`, 3},
		{"backslash at end", `"\`, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, o := range []Options{{}, strict} {
				out, err := o.Canonicalize([]byte(tt.in))
				var e *Error
				if !errors.As(err, &e) || !errors.Is(err, ErrInvalidJSON) {
					t.Fatalf("%+v: got %q, %v; want ErrInvalidJSON", o, out, err)
				}
				if e.Offset != tt.offset {
					t.Errorf("%+v: offset %d, want %d (%v)", o, e.Offset, tt.offset, err)
				}
			}
		})
	}
}

func TestErrorPathAndMessage(t *testing.T) {
	in := `{"content":{"a/b~c":[1,2,{"x":1.5}]}}`
	_, err := strict.Canonicalize([]byte(in))
	var e *Error
	if !errors.As(err, &e) || !errors.Is(err, ErrFloat) {
		t.Fatalf("got %v", err)
	}
	if e.Path != "/content/a~1b~0c/2/x" {
		t.Errorf("path %q", e.Path)
	}
	if e.Offset != strings.Index(in, "1.5") {
		t.Errorf("offset %d", e.Offset)
	}
	want := `canonicaljson: float not permitted: "1.5" at offset 30 (in /content/a~1b~0c/2/x)`
	if err.Error() != want {
		t.Errorf("message\n got %s\nwant %s", err, want)
	}

	_, err = strict.Canonicalize([]byte(`{"depth":9007199254740992}`))
	if !errors.As(err, &e) || !errors.Is(err, ErrIntegerRange) || e.Path != "/depth" || e.Offset != 9 {
		t.Errorf("integer range: %v", err)
	}

	// Hostile keys are truncated in messages.
	long := strings.Repeat("k", 10000)
	_, err = strict.Canonicalize([]byte(`{"` + long + `":1,"` + long + `":2}`))
	if !errors.Is(err, ErrDuplicateKey) || len(err.Error()) > 20000+300 || !strings.Contains(err.Error(), `kkk"...`) {
		t.Errorf("duplicate long key: %.200v", err)
	}
}

func TestDepthLimit(t *testing.T) {
	nest := func(n int) []byte {
		return []byte(strings.Repeat("[", n) + strings.Repeat("]", n))
	}
	nestObj := func(n int) []byte {
		return []byte(strings.Repeat(`{"a":`, n) + "1" + strings.Repeat("}", n))
	}
	if _, err := Canonicalize(nest(DefaultMaxDepth)); err != nil {
		t.Errorf("depth %d: %v", DefaultMaxDepth, err)
	}
	if _, err := Canonicalize(nestObj(DefaultMaxDepth)); err != nil {
		t.Errorf("object depth %d: %v", DefaultMaxDepth, err)
	}
	for _, tt := range []struct {
		in     []byte
		offset int // of the first bracket past the limit
	}{
		{nest(DefaultMaxDepth + 1), DefaultMaxDepth},
		{nestObj(DefaultMaxDepth + 1), DefaultMaxDepth * len(`{"a":`)},
	} {
		_, err := Canonicalize(tt.in)
		var e *Error
		if !errors.As(err, &e) || !errors.Is(err, ErrTooDeep) || e.Offset != tt.offset {
			t.Errorf("depth %d: %v", DefaultMaxDepth+1, err)
		}
	}
	// The limit is checked before the deeper level is read, so a deep
	// document is rejected at the first level past the limit.
	_, err := Options{MaxDepth: 3}.Canonicalize([]byte(`[[[[` + strings.Repeat("x", 100)))
	var e *Error
	if !errors.As(err, &e) || !errors.Is(err, ErrTooDeep) || e.Offset != 3 || e.Path != "/0/0/0" {
		t.Errorf("MaxDepth 3: %v", err)
	}
	if _, err := (Options{MaxDepth: 3}).Canonicalize([]byte(`[[[1]]]`)); err != nil {
		t.Errorf("MaxDepth 3 at limit: %v", err)
	}
	if _, err := (Options{MaxDepth: 500}).Canonicalize(nest(500)); err != nil {
		t.Errorf("MaxDepth 500: %v", err)
	}
	// Absurd limits are capped so input cannot exhaust the stack.
	_, err = Options{MaxDepth: 1 << 30, MaxBytes: -1}.Canonicalize(nest(maxDepthCeiling + 1))
	if !errors.Is(err, ErrTooDeep) {
		t.Errorf("ceiling: %v", err)
	}
}

func TestSizeLimit(t *testing.T) {
	in := []byte(`{"a":"` + strings.Repeat("x", 100) + `"}`)
	if _, err := (Options{MaxBytes: len(in)}).Canonicalize(in); err != nil {
		t.Errorf("at limit: %v", err)
	}
	_, err := Options{MaxBytes: len(in) - 1}.Canonicalize(in)
	var e *Error
	if !errors.As(err, &e) || !errors.Is(err, ErrTooLarge) || e.Offset != len(in)-1 {
		t.Errorf("over limit: %v", err)
	}
	// The size check comes before parsing: invalid JSON over the limit
	// reports ErrTooLarge.
	if _, err := (Options{MaxBytes: 2}).Canonicalize([]byte(`{{{{`)); !errors.Is(err, ErrTooLarge) {
		t.Errorf("invalid and too large: %v", err)
	}
	big := make([]byte, DefaultMaxBytes+1)
	if _, err := Canonicalize(big); !errors.Is(err, ErrTooLarge) {
		t.Errorf("default limit: %v", err)
	}
	if _, err := (Options{MaxBytes: -1}).Canonicalize(in); err != nil {
		t.Errorf("no limit: %v", err)
	}
}

func TestValidate(t *testing.T) {
	if err := strict.Validate([]byte(`{"a":[1,"x",null]}`)); err != nil {
		t.Error(err)
	}
	if err := strict.Validate([]byte(`{"a":1.5}`)); !errors.Is(err, ErrFloat) {
		t.Errorf("got %v", err)
	}
	if err := (Options{}).Validate([]byte(`{"a":1.5}`)); err != nil {
		t.Errorf("lenient: %v", err)
	}
}

func TestMarshal(t *testing.T) {
	type content struct {
		Body    string `json:"body"`
		MsgType string `json:"msgtype"`
	}
	type event struct {
		Type    string            `json:"type"`
		Content content           `json:"content"`
		Depth   int64             `json:"depth"`
		Hashes  map[string]string `json:"hashes"`
		Extra   map[string]any    `json:"extra,omitempty"`
	}
	v := event{
		Type:    "m.room.message",
		Content: content{Body: "<b>&</b> \u2028\u2029 /", MsgType: "m.text"},
		Depth:   9007199254740991,
		Hashes:  map[string]string{"sha256": "abc", "a": "z"},
		Extra:   map[string]any{"ratio": 2.0},
	}
	want := `{"content":{"body":"<b>&</b> ` + "\u2028\u2029" + ` /","msgtype":"m.text"},"depth":9007199254740991,"extra":{"ratio":2},"hashes":{"a":"z","sha256":"abc"},"type":"m.room.message"}`
	for _, o := range []Options{{}, strict} {
		got, err := o.Marshal(v)
		if err != nil || string(got) != want {
			t.Errorf("%+v:\n got %s, %v\nwant %s", o, got, err, want)
		}
	}
	if got, err := Marshal(v); err != nil || string(got) != want {
		t.Errorf("Marshal: got %s, %v", got, err)
	}

	v.Extra["ratio"] = 2.5
	if _, err := strict.Marshal(v); !errors.Is(err, ErrFloat) {
		t.Errorf("strict float: %v", err)
	}
	if got, err := Marshal(v); err != nil || !strings.Contains(string(got), `"ratio":2.5`) {
		t.Errorf("lenient float: %s, %v", got, err)
	}
	if _, err := Marshal(func() {}); err == nil {
		t.Error("unsupported type: no error")
	}
}

// TestAlreadyCanonical checks that canonical input comes back unchanged,
// the common case when re-verifying stored events.
func TestAlreadyCanonical(t *testing.T) {
	in, err := os.ReadFile("testdata/event_2k.json")
	if err != nil {
		t.Fatal(err)
	}
	once, err := strict.Canonicalize(in)
	if err != nil {
		t.Fatal(err)
	}
	twice, err := strict.Canonicalize(once)
	if err != nil || string(twice) != string(once) {
		t.Errorf("not idempotent: %v", err)
	}
	if err := checkAgainstReference(in, once); err != nil {
		t.Error(err)
	}
}

// The signing test vectors in the spec appendices pin exact canonical bytes
// through ed25519 signatures and SHA-256 content hashes, so they are a
// byte-exact check of this package's output.

const signingSeed = "YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1"

func TestSpecJSONSigningVectors(t *testing.T) {
	seed, err := base64.RawStdEncoding.DecodeString(signingSeed)
	if err != nil {
		t.Fatal(err)
	}
	key := ed25519.NewKeyFromSeed(seed)
	tests := []struct{ in, sig string }{
		{`{}`, "K8280/U9SSy9IVtjBuVeLr+HpOB4BQFWbg+UZaADMtTdGYI7Geitb76LTrr5QV/7Xg4ahLwYGYZzuHGZKM5ZAQ"},
		{`{"two": "Two", "one": 1}`, "KqmLSbO39/Bzb0QIYE82zqLwsA+PDzYIpIRA2sRQ4sL53+sN6/fpNSoqE7BP7vBZhG6kYdD13EIMJpvhJI+6Bw"},
		// Event signing vectors: the signed bytes are the redacted event
		// without signatures and unsigned, hashes included.
		{`{
			"room_id": "!x:domain", "sender": "@a:domain", "origin": "domain",
			"origin_server_ts": 1000000, "type": "X", "content": {},
			"prev_events": [], "auth_events": [], "depth": 3,
			"hashes": {"sha256": "5jM4wQpv6lnBo7CLIghJuHdW+s2CMBJPUOGOC89ncos"}
		}`, "KxwGjPSDEtvnFgU00fwFz+l6d2pJM6XBIaMEn81SXPTRl16AqLAYqfIReFGZlHi5KLjAWbOoMszkwsQma+lYAg"},
		{`{
			"content": {}, "event_id": "$0:domain", "origin": "domain",
			"origin_server_ts": 1000000, "type": "m.room.message",
			"room_id": "!r:domain", "sender": "@u:domain",
			"hashes": {"sha256": "onLKD1bGljeBWQhWZ1kaP9SorVmRQNdN5aM2JYU2n/g"}
		}`, "Wm+VzmOUOz08Ds+0NTWb1d4CZrVsJSikkeRxh6aCcUwu6pNC78FunoD7KNWzqFn241eYHYMGCA5McEiVPdhzBA"},
	}
	for _, tt := range tests {
		canonical, err := strict.Canonicalize([]byte(tt.in))
		if err != nil {
			t.Fatal(err)
		}
		got := base64.RawStdEncoding.EncodeToString(ed25519.Sign(key, canonical))
		if got != tt.sig {
			t.Errorf("signature over %s\n got %s\nwant %s", canonical, got, tt.sig)
		}
	}
}

func TestSpecContentHashVectors(t *testing.T) {
	// The content hash covers the event without signatures, unsigned and
	// hashes.
	tests := []struct{ in, hash string }{
		{`{
			"room_id": "!x:domain", "sender": "@a:domain", "origin": "domain",
			"origin_server_ts": 1000000, "type": "X", "content": {},
			"prev_events": [], "auth_events": [], "depth": 3
		}`, "5jM4wQpv6lnBo7CLIghJuHdW+s2CMBJPUOGOC89ncos"},
		{`{
			"content": {"body": "Here is the message content"},
			"event_id": "$0:domain", "origin": "domain",
			"origin_server_ts": 1000000, "type": "m.room.message",
			"room_id": "!r:domain", "sender": "@u:domain"
		}`, "onLKD1bGljeBWQhWZ1kaP9SorVmRQNdN5aM2JYU2n/g"},
	}
	for _, tt := range tests {
		canonical, err := strict.Canonicalize([]byte(tt.in))
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(canonical)
		if got := base64.RawStdEncoding.EncodeToString(sum[:]); got != tt.hash {
			t.Errorf("hash of %s\n got %s\nwant %s", canonical, got, tt.hash)
		}
	}
}

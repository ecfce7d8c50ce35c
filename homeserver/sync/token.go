package sync

import (
	"fmt"
	"strconv"
	"strings"
)

// Token is a sync token: a position in each stream /sync reads. It is
// written as "s" followed by the positions joined by "_", so that streams
// can be added at the end without breaking tokens clients hold.
type Token struct {
	Events      int64
	AccountData int64
	// Ext holds the positions of the registered extensions, in the order
	// they were added to the Service.
	Ext []int64
}

func (t Token) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "s%d_%d", t.Events, t.AccountData)
	for _, p := range t.Ext {
		fmt.Fprintf(&b, "_%d", p)
	}
	return b.String()
}

// ext is the position of extension i (0 when the token predates it).
func (t Token) ext(i int) int64 {
	if i < len(t.Ext) {
		return t.Ext[i]
	}
	return 0
}

// ParseToken reads a token written by String. Missing trailing positions
// read as 0.
func ParseToken(s string) (Token, error) {
	if !strings.HasPrefix(s, "s") {
		return Token{}, fmt.Errorf("invalid token %q", s)
	}
	parts := strings.Split(s[1:], "_")
	if len(parts) > 32 {
		return Token{}, fmt.Errorf("invalid token %q", s)
	}
	vals := make([]int64, max(len(parts), 2))
	for i, p := range parts {
		v, err := strconv.ParseInt(p, 10, 64)
		// Only the event position may be negative: pagination tokens
		// into backfilled history (stored below position 0).
		if err != nil || (v < 0 && i > 0) {
			return Token{}, fmt.Errorf("invalid token %q", s)
		}
		vals[i] = v
	}
	t := Token{Events: vals[0], AccountData: vals[1]}
	if len(vals) > 2 {
		t.Ext = vals[2:]
	}
	return t, nil
}

package authrules

import (
	"strings"

	"github.com/parley-chat/parley/matrix/id"
)

// domainOf returns the part of a Matrix identifier after its first colon: the
// server name of a user ID, room ID (v1-11) or event ID (v1-2). ok is false
// for an identifier without one, which then matches no domain at all.
func domainOf(s string) (domain string, ok bool) {
	i := strings.IndexByte(s, ':')
	if i < 0 || i == len(s)-1 {
		return "", false
	}
	return s[i+1:], true
}

// sameDomain reports whether two identifiers carry the same server name.
func sameDomain(a, b string) bool {
	da, okA := domainOf(a)
	db, okB := domainOf(b)
	return okA && okB && da == db
}

// validUserID applies the user ID grammar that events must accept over
// federation, historical localparts included: the validation the spec
// applies to `sender`.
func validUserID(s string) bool {
	_, err := id.ParseUserID(s)
	return err == nil
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

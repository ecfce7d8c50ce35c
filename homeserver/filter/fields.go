package filter

import "strings"

// SplitPath splits a dot-separated property path ("content.m\.relates_to")
// into property names, undoing the escapes the spec defines: "\." is a
// literal dot and "\\" a literal backslash; any other backslash is kept as
// it is.
func SplitPath(path string) []string {
	var (
		parts []string
		cur   strings.Builder
	)
	for i := 0; i < len(path); i++ {
		c := path[i]
		switch {
		case c == '\\' && i+1 < len(path) && (path[i+1] == '.' || path[i+1] == '\\'):
			cur.WriteByte(path[i+1])
			i++
		case c == '.':
			parts = append(parts, cur.String())
			cur.Reset()
		default:
			cur.WriteByte(c)
		}
	}
	return append(parts, cur.String())
}

// Project keeps only the event fields the filter's event_fields name, in
// an event decoded as a JSON object. It returns the event unchanged when
// the filter has no event_fields. Paths naming fields the event lacks, or
// descending into a value that is not an object, are skipped.
func (f *Filter) Project(event map[string]any) map[string]any {
	if f == nil || f.EventFields == nil {
		return event
	}
	out := make(map[string]any)
	for _, p := range f.EventFields {
		copyPath(out, event, SplitPath(p))
	}
	return out
}

func copyPath(dst, src map[string]any, path []string) {
	v, ok := src[path[0]]
	if !ok {
		return
	}
	if len(path) == 1 {
		dst[path[0]] = v
		return
	}
	sub, ok := v.(map[string]any)
	if !ok {
		return
	}
	next, ok := dst[path[0]].(map[string]any)
	if !ok {
		next = make(map[string]any)
		dst[path[0]] = next
	}
	copyPath(next, sub, path[1:])
	if len(next) == 0 {
		delete(dst, path[0])
	}
}

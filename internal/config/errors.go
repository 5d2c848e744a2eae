package config

import (
	"cmp"
	"slices"
	"strconv"
	"strings"
)

// Error is one problem in a configuration file, located precisely enough that an operator can jump
// to it: waage.yaml:23:7: backends[0].servers[1].weight: must be between 0 and 1000.
type Error struct {
	// File names the source; empty when unknown.
	File string
	// Line and Col are 1-based; 0 means unknown (for example a YAML syntax error has no column).
	Line, Col int
	// Path is the field path in YAML names with indexes, e.g. frontends[1].routes[0].match.host.
	Path string
	// Msg says what is wrong and, where it helps, how to fix it.
	Msg string
}

// Error formats the problem as file:line:col: path: msg, leaving out the parts that are unknown.
func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		b.WriteString(":")
	}
	if e.Line > 0 {
		b.WriteString(strconv.Itoa(e.Line))
		b.WriteString(":")
		if e.Col > 0 {
			b.WriteString(strconv.Itoa(e.Col))
			b.WriteString(":")
		}
	}
	if b.Len() > 0 {
		b.WriteString(" ")
	}
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// ErrorList is every problem found in one file, sorted by position, so that one run of
// `waage validate` shows them all instead of one per edit-and-retry cycle.
type ErrorList []*Error

// Error joins the problems, one per line.
func (l ErrorList) Error() string {
	msgs := make([]string, len(l))
	for i, e := range l {
		msgs[i] = e.Error()
	}
	return strings.Join(msgs, "\n")
}

// Unwrap exposes the single problems to errors.Is and errors.As.
func (l ErrorList) Unwrap() []error {
	errs := make([]error, len(l))
	for i, e := range l {
		errs[i] = e
	}
	return errs
}

// sort orders the problems by line and column; problems without a position come first. The sort
// is stable so problems at one position keep the order in which they were found.
func (l ErrorList) sort() {
	slices.SortStableFunc(l, func(a, b *Error) int {
		return cmp.Or(cmp.Compare(a.Line, b.Line), cmp.Compare(a.Col, b.Col))
	})
}

// pos is a 1-based line and column in the source; the zero value means unknown.
type pos struct{ line, col int }

// sourceMap remembers where each decoded field came from, so that validation, which works on the
// decoded Go values, can still point at the offending line and column.
type sourceMap struct {
	// values maps a field path to the position of its value node.
	values map[string]pos
	// keys maps a field path to the position of its mapping key.
	keys map[string]pos
	// failed holds the paths that could not be decoded; validation stays silent about them and
	// everything below them, since their Go value is a placeholder, not what the file says.
	failed map[string]bool
}

func newSourceMap() *sourceMap {
	return &sourceMap{values: map[string]pos{}, keys: map[string]pos{}, failed: map[string]bool{}}
}

// present reports whether the file gave a (non-null) value at path. A nil sourceMap (a Config
// built in code) knows nothing, so nothing is present.
func (m *sourceMap) present(path string) bool {
	if m == nil {
		return false
	}
	_, ok := m.values[path]
	return ok
}

// value returns the position of path's value, or of its nearest ancestor that has one: a missing
// field is reported where its parent mapping is.
func (m *sourceMap) value(path string) pos {
	if m == nil {
		return pos{}
	}
	for {
		if p, ok := m.values[path]; ok {
			return p
		}
		if path == "" {
			return pos{}
		}
		path = parentPath(path)
	}
}

// key returns the position of path's mapping key, falling back to value.
func (m *sourceMap) key(path string) pos {
	if m != nil {
		if p, ok := m.keys[path]; ok {
			return p
		}
	}
	return m.value(path)
}

// isFailed reports whether path or one of its ancestors failed to decode.
func (m *sourceMap) isFailed(path string) bool {
	if m == nil || len(m.failed) == 0 {
		return false
	}
	for {
		if m.failed[path] {
			return true
		}
		if path == "" {
			return false
		}
		path = parentPath(path)
	}
}

// parentPath strips the last ".key" or "[index]" from path.
func parentPath(path string) string {
	if i := strings.LastIndexAny(path, ".["); i >= 0 {
		return path[:i]
	}
	return ""
}

// fieldPath and indexPath build the paths that errors show.
func fieldPath(parent, key string) string {
	if parent == "" {
		return key
	}
	return parent + "." + key
}

func indexPath(parent string, i int) string {
	return parent + "[" + strconv.Itoa(i) + "]"
}

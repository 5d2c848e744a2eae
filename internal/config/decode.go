package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.yaml.in/yaml/v3"
)

// Load reads the file at path, decodes it strictly, validates it and applies the defaults.
// ${VAR} references expand from the process environment. Problems in the file come back as an
// ErrorList holding every one of them; a file that cannot be read gives a wrapped os error.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load config: %w", err)
	}
	cfg, err := Parse(path, data, os.LookupEnv)
	if err != nil {
		return nil, err
	}
	cfg.resolvePaths(filepath.Dir(path))
	return cfg, nil
}

// resolvePaths makes the relative file paths of the configuration (certificates, keys, CA
// bundles) relative to dir, the directory of the configuration file, so a config means the same
// files whatever directory waage was started from.
func (c *Config) resolvePaths(dir string) {
	abs := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	clientTLS := func(t *ClientTLS) {
		if t != nil {
			abs(&t.CA)
			abs(&t.Cert)
			abs(&t.Key)
		}
	}
	for i := range c.Frontends {
		if t := c.Frontends[i].TLS; t != nil {
			for j := range t.Certificates {
				abs(&t.Certificates[j].Cert)
				abs(&t.Certificates[j].Key)
			}
			abs(&t.ClientCA)
			if a := t.ACME; a != nil {
				if a.Storage == "" {
					a.Storage = "acme"
				}
				abs(&a.Storage)
				abs(&a.CA)
			}
		}
	}
	for i := range c.Backends {
		b := &c.Backends[i]
		clientTLS(b.TLS)
		if b.HealthCheck != nil {
			clientTLS(b.HealthCheck.TLS)
		}
		for j := range b.Servers {
			if hc := b.Servers[j].HealthCheck; hc != nil {
				clientTLS(hc.TLS)
			}
		}
	}
}

// Parse is Load on bytes already in memory, so tests, `waage validate` on stdin and the cluster and
// Kubernetes providers share one code path with the file loader. file names the source in errors
// and is stored in Config.File; lookupEnv resolves ${VAR} references (nil: every variable is unset).
// On success the Config is validated and has its defaults applied; otherwise the error is an
// ErrorList with every problem found, and the Config is nil.
func Parse(file string, data []byte, lookupEnv func(string) (string, bool)) (*Config, error) {
	root, err := parseYAML(data)
	if err != nil {
		return nil, ErrorList{syntaxError(file, err)}
	}
	d := &decoder{file: file, env: lookupEnv, src: newSourceMap()}
	cfg := &Config{File: file}
	if root != nil {
		d.value(root, reflect.ValueOf(cfg).Elem(), "")
	}
	errs := append(d.errs, validate(cfg, file, d.src)...)
	if len(errs) > 0 {
		errs.sort()
		return nil, errs
	}
	cfg.ApplyDefaults()
	return cfg, nil
}

// parseYAML turns data into one node tree. It returns nil for an empty file or one with only
// comments. A stream of several documents is an error: silently ignoring the second one would hide
// half a configuration.
func parseYAML(data []byte) (root *yaml.Node, err error) {
	defer func() {
		// The YAML library converts its own failures to errors; anything else is a bug in it, and a
		// bad file must not take the process (a reload, an admin request) down with it.
		if r := recover(); r != nil {
			root, err = nil, fmt.Errorf("YAML parser failed: %v", r)
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return nil, err
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return nil, err
	default:
		return nil, fmt.Errorf("yaml: line %d: only one YAML document is supported; remove the second one", next.Line)
	}
	if doc.Kind == yaml.DocumentNode {
		if len(doc.Content) == 0 {
			return nil, nil
		}
		return doc.Content[0], nil
	}
	return &doc, nil
}

// yamlLine picks the line number out of the YAML library's "yaml: line N: problem" messages.
var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// syntaxError converts a YAML parser error into an Error with the line the parser reports.
func syntaxError(file string, err error) *Error {
	e := &Error{File: file, Msg: "invalid YAML: " + strings.TrimPrefix(err.Error(), "yaml: ")}
	if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
		e.Line, _ = strconv.Atoi(m[1])
		e.Msg = "invalid YAML: " + m[2]
	}
	return e
}

// decoder walks a YAML node tree and fills Go values through reflection, guided by the `yaml`
// struct tags. It is written here rather than using yaml.v3's Decode because that stops at the
// first problem and drops positions; this one records every problem with its line and column and
// remembers where each field came from for validation.
type decoder struct {
	file string
	env  func(string) (string, bool)
	src  *sourceMap
	errs ErrorList
}

// errorf records a problem with the value at path and marks path as failed, so validation does not
// pile follow-up errors on a value that was never really decoded.
func (d *decoder) errorf(n *yaml.Node, path, format string, args ...any) {
	d.src.failed[path] = true
	d.report(n, path, format, args...)
}

// report records a problem at node n without marking path as failed: for problems with one key of
// the mapping at path, after which the rest of the mapping is still worth validating.
func (d *decoder) report(n *yaml.Node, path, format string, args ...any) {
	d.errs = append(d.errs, &Error{File: d.file, Line: n.Line, Col: n.Column, Path: path, Msg: fmt.Sprintf(format, args...)})
}

var (
	durationType   = reflect.TypeFor[Duration]()
	stringListType = reflect.TypeFor[StringList]()
	stringMapType  = reflect.TypeFor[StringMap]()
)

// value decodes n into v. An explicit null (`key:` or `key: ~`) leaves v at its zero value: it means
// the same as leaving the key out, so *int and *Sticky stay nil.
func (d *decoder) value(n *yaml.Node, v reflect.Value, path string) {
	if !d.supported(n, path) || isNull(n) {
		return
	}
	d.src.values[path] = pos{n.Line, n.Column}
	switch v.Type() {
	case durationType:
		d.duration(n, v, path)
		return
	case byteSizeType:
		d.byteSize(n, v, path)
		return
	case stringListType:
		if n.Kind == yaml.SequenceNode {
			d.sequence(n, v, path)
		} else if s, ok := d.scalar(n, path, "a string or a list of strings"); ok {
			v.Set(reflect.ValueOf(StringList{s}))
		}
		return
	case stringMapType:
		d.stringMap(n, v, path)
		return
	}
	switch v.Kind() {
	case reflect.Pointer:
		elem := reflect.New(v.Type().Elem())
		d.value(n, elem.Elem(), path)
		v.Set(elem)
	case reflect.Struct:
		d.structure(n, v, path)
	case reflect.Slice:
		d.sequence(n, v, path)
	case reflect.String:
		if s, ok := d.scalar(n, path, "a string"); ok {
			v.SetString(s)
		}
	case reflect.Int:
		d.integer(n, v, path)
	case reflect.Bool:
		d.boolean(n, v, path)
	default:
		// Only reachable if types.go gains a field of a kind this walker does not know; fail loudly
		// in tests rather than ignore the field.
		panic(fmt.Sprintf("config: decoder does not support %s at %s", v.Type(), path))
	}
}

// supported rejects the YAML features that the schema has no use for and that would make a file
// mean something other than it seems: aliases (which also shut out "billion laughs" expansion
// bombs), merge keys and non-core tags such as !!binary.
func (d *decoder) supported(n *yaml.Node, path string) bool {
	if n.Kind == yaml.AliasNode {
		d.errorf(n, path, "aliases are not supported")
		return false
	}
	if n.Style&yaml.TaggedStyle != 0 {
		switch n.ShortTag() {
		case "!!str", "!!int", "!!bool", "!!null", "!!float", "!!map", "!!seq":
		default:
			d.errorf(n, path, "tag %s is not supported", n.Tag)
			return false
		}
	}
	return true
}

// isNull reports whether n is a YAML null (empty value, ~, null).
func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// describe names what a node is, for "expected X, got Y" messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if r := []rune(n.Value); len(r) > 40 {
			return strconv.Quote(string(r[:37]) + "...")
		}
		return strconv.Quote(n.Value)
	default:
		return "a YAML " + n.Tag
	}
}

// scalar returns the text of a scalar node with ${VAR} references expanded. Conversion to ints,
// bools and durations works on this text, whatever the quoting, so `weight: "${W}"` works.
func (d *decoder) scalar(n *yaml.Node, path, want string) (string, bool) {
	if n.Kind != yaml.ScalarNode {
		d.errorf(n, path, "expected %s, got %s", want, describe(n))
		return "", false
	}
	s, err := expandEnv(n.Value, d.env)
	if err != nil {
		d.errorf(n, path, "%v", err)
		return "", false
	}
	return s, true
}

func (d *decoder) integer(n *yaml.Node, v reflect.Value, path string) {
	s, ok := d.scalar(n, path, "an integer")
	if !ok {
		return
	}
	i, err := strconv.ParseInt(s, 10, v.Type().Bits())
	switch {
	case errors.Is(err, strconv.ErrRange):
		d.errorf(n, path, "integer %s is out of range", s)
	case err != nil:
		d.errorf(n, path, "expected an integer, got %q", s)
	default:
		v.SetInt(i)
	}
}

// boolean accepts only the YAML 1.2 spellings of true and false; yes/no/on/off are errors because
// YAML 1.1 tools read them as booleans and others as strings.
func (d *decoder) boolean(n *yaml.Node, v reflect.Value, path string) {
	s, ok := d.scalar(n, path, "true or false")
	if !ok {
		return
	}
	switch s {
	case "true", "True", "TRUE":
		v.SetBool(true)
	case "false", "False", "FALSE":
		v.SetBool(false)
	default:
		d.errorf(n, path, "expected true or false, got %q", s)
	}
}

// bareInt matches a number without a unit. time.ParseDuration rejects it with a vaguer message
// (and accepts a bare 0); saying which unit is missing is more use to the operator, and requiring
// it even for 0 keeps every duration in the file readable the same way.
var bareInt = regexp.MustCompile(`^[-+]?[0-9]+$`)

func (d *decoder) duration(n *yaml.Node, v reflect.Value, path string) {
	s, ok := d.scalar(n, path, "a duration")
	if !ok {
		return
	}
	if bareInt.MatchString(s) {
		d.errorf(n, path, "duration %s needs a unit, e.g. %ss or %sms", s, s, s)
		return
	}
	dur, err := time.ParseDuration(s)
	if err != nil {
		d.errorf(n, path, "expected a duration like 500ms or 2s, got %q", s)
		return
	}
	v.SetInt(int64(dur))
}

// sequence decodes a YAML list into a slice. An empty list leaves the slice nil, so "[]" and
// leaving the key out decode the same.
func (d *decoder) sequence(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.SequenceNode {
		d.errorf(n, path, "expected a list, got %s", describe(n))
		return
	}
	if len(n.Content) == 0 {
		return
	}
	s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
	for i, item := range n.Content {
		d.value(item, s.Index(i), indexPath(path, i))
	}
	v.Set(s)
}

// mapping checks that n is a mapping with unique scalar keys and calls f for each entry. Keys are
// taken literally (never expanded), so the structure of the file is fixed by the file.
func (d *decoder) mapping(n *yaml.Node, path, want string, f func(key string, k, val *yaml.Node)) {
	if n.Kind != yaml.MappingNode {
		d.errorf(n, path, "expected %s, got %s", want, describe(n))
		return
	}
	seen := make(map[string]int, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		switch {
		case k.Kind == yaml.AliasNode:
			d.report(k, path, "aliases are not supported")
			continue
		case k.Kind != yaml.ScalarNode:
			d.report(k, path, "mapping keys must be strings, got %s", describe(k))
			continue
		case k.ShortTag() == "!!merge":
			d.report(k, path, "merge keys (<<) are not supported")
			continue
		}
		if line, dup := seen[k.Value]; dup {
			d.errorf(k, fieldPath(path, k.Value), "duplicate key %q (first at line %d)", k.Value, line)
			continue
		}
		seen[k.Value] = k.Line
		f(k.Value, k, val)
	}
}

// structure decodes a mapping into a struct; keys that name no field are errors listing the keys
// that would have been valid, since a misspelt key otherwise silently falls back to a default.
func (d *decoder) structure(n *yaml.Node, v reflect.Value, path string) {
	info := structInfoOf(v.Type())
	d.mapping(n, path, "a mapping", func(key string, k, val *yaml.Node) {
		idx, ok := info.byKey[key]
		if !ok {
			d.report(k, path, "unknown key %q (valid: %s)", key, info.valid)
			return
		}
		child := fieldPath(path, key)
		d.src.keys[child] = pos{k.Line, k.Column}
		d.value(val, v.Field(idx), child)
	})
}

// stringMap decodes a mapping of scalars, keeping the file's order.
func (d *decoder) stringMap(n *yaml.Node, v reflect.Value, path string) {
	var m StringMap
	d.mapping(n, path, "a mapping of strings", func(key string, k, val *yaml.Node) {
		child := fieldPath(path, key)
		d.src.keys[child] = pos{k.Line, k.Column}
		if !d.supported(val, child) {
			return
		}
		d.src.values[child] = pos{val.Line, val.Column}
		if s, ok := d.scalar(val, child, "a string"); ok {
			m = append(m, KV{Key: key, Value: s})
		}
	})
	if len(m) > 0 {
		v.Set(reflect.ValueOf(m))
	}
}

// structInfo is what the decoder needs to know about one struct type.
type structInfo struct {
	byKey map[string]int // YAML key -> field index
	valid string         // the keys in declaration order, for "unknown key" messages
}

var structInfos sync.Map // reflect.Type -> *structInfo

func structInfoOf(t reflect.Type) *structInfo {
	if info, ok := structInfos.Load(t); ok {
		return info.(*structInfo)
	}
	info := &structInfo{byKey: map[string]int{}}
	var keys []string
	for i := range t.NumField() {
		f := t.Field(i)
		key, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if key == "-" || !f.IsExported() {
			continue
		}
		if key == "" {
			key = strings.ToLower(f.Name)
		}
		info.byKey[key] = i
		keys = append(keys, key)
	}
	info.valid = strings.Join(keys, ", ")
	structInfos.Store(t, info)
	return info
}

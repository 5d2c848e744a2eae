package config

import (
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// billionLaughs is the classic alias expansion bomb: 9 levels of 9 aliases each, a billion strings
// if expanded. Under known keys so the decoder walks into it.
var billionLaughs = func() string {
	var b strings.Builder
	b.WriteString("frontends:\n  - name: a\n    listen: &l0 [\"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\"]\n")
	for i := 1; i <= 9; i++ {
		b.WriteString("  - name: a\n    listen: &l" + string(rune('0'+i)) + " [")
		for j := range 9 {
			if j > 0 {
				b.WriteString(", ")
			}
			b.WriteString("*l" + string(rune('0'+i-1)))
		}
		b.WriteString("]\n")
	}
	b.WriteString("  - {name: z, listen: *l9}\n")
	return b.String()
}()

// oddYAML are inputs that stress the YAML layer rather than the schema.
var oddYAML = []string{
	billionLaughs,
	"a: &a [*a]\n",
	"log: &x {level: info}\nadmin: *x\n",
	"log: {<<: {level: info}}\n",
	"admin: {token: !!binary c2VjcmV0}\n",
	"admin: {token: !!timestamp 2001-12-14}\n",
	"backends: [{name: b, pool: {max_idle: 9223372036854775808}}]\n",
	"backends: [{name: b, pool: {max_idle: -9223372036854775808}}]\n",
	"backends: [{name: b, servers: [{address: \"h:1\", weight: 0x10}]}]\n",
	"backends: [{name: b, timeouts: {connect: 9999999999h}}]\n",
	strings.Repeat("[", 20000),
	strings.Repeat("- ", 5000) + "x\n",
	"frontends: " + strings.Repeat("[", 100) + strings.Repeat("]", 100) + "\n",
	"? [a, b]\n: c\n",
	"? {a: b}\n: c\n",
	"\"\\0\": x\n",
	"admin: {token: \"\\xff\\u0000\"}\n",
	"%YAML 1.1\n---\nlog: {level: info}\n",
	"%TAG ! tag:example.com,2000:\n---\nlog: !foo {level: info}\n",
	"--- |\n  text\n",
	"\ufefflog: {level: info}\n",
	"log: {level: info}\n...\n",
	"\t",
	"log:\n\tlevel: info\n",
	"{",
	"null\n",
	"~\n",
	"[]\n",
	"{}\n",
	"\"\"\n",
}

func FuzzParse(f *testing.F) {
	full, err := os.ReadFile("testdata/full.yaml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(full)
	for _, tc := range parseErrorCases {
		f.Add([]byte(tc.data))
	}
	for _, tc := range parseValidCases {
		f.Add([]byte(tc.data))
	}
	for _, s := range oddYAML {
		f.Add([]byte(s))
	}
	env := mapEnv(map[string]string{"WAAGE_ADMIN_TOKEN": "t", "A": "1", "DOLLAR": "$", "REF": "${A}"})
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse("f.yaml", data, env)
		if err != nil {
			var list ErrorList
			if !errors.As(err, &list) || len(list) == 0 {
				t.Fatalf("Parse error %v is not a non-empty ErrorList", err)
			}
			for _, e := range list {
				if e.Msg == "" || e.File != "f.yaml" || e.Line < 0 || e.Col < 0 {
					t.Fatalf("malformed error %#v", e)
				}
			}
			return
		}
		if cfg.File != "f.yaml" {
			t.Fatalf("File = %q", cfg.File)
		}
		again := clone(cfg)
		again.ApplyDefaults()
		if !reflect.DeepEqual(cfg, again) {
			t.Fatalf("ApplyDefaults is not idempotent:\n%+v\n%+v", cfg, again)
		}
		if errs := validate(cfg, "", nil); len(errs) > 0 {
			t.Fatalf("the defaulted config no longer validates:\n%v", errs)
		}
		out := reencode(t, cfg)
		back, err := Parse("f.yaml", out, nil)
		if err != nil {
			t.Fatalf("re-encoded config does not parse:\n%s\n%v", out, err)
		}
		if !reflect.DeepEqual(cfg, back) {
			t.Fatalf("round trip changed the config:\n%s\n%+v\n%+v", out, cfg, back)
		}
	})
}

func TestAliasBombIsCheap(t *testing.T) {
	start := time.Now()
	_, err := Parse("bomb.yaml", []byte(billionLaughs), nil)
	if err == nil || !strings.Contains(err.Error(), "aliases are not supported") {
		t.Fatalf("Parse(billion laughs) = %v, want alias errors", err)
	}
	// One error per alias written in the file (9 lists of 9, plus one), none per expansion.
	if n := strings.Count(err.Error(), "aliases are not supported"); n != 82 {
		t.Errorf("%d alias errors, want 82", n)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Parse(billion laughs) took %v", d)
	}
}

func TestDeepNestingIsAnError(t *testing.T) {
	_, err := Parse("deep.yaml", []byte(strings.Repeat("[", 20000)), nil)
	if err == nil || !strings.Contains(err.Error(), "invalid YAML") {
		t.Fatalf("Parse(deep) = %v, want a YAML error", err)
	}
}

// TestRoundTrip checks that a loaded config marshals to YAML that loads as the same config, which
// is what the admin API's effective-config view relies on.
func TestRoundTrip(t *testing.T) {
	full, err := os.ReadFile("testdata/full.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cases := append([]struct{ name, data string }{{"full", string(full)}}, parseValidCases...)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse("r.yaml", []byte(tc.data), mapEnv(map[string]string{"WAAGE_ADMIN_TOKEN": "$ecret"}))
			if err != nil {
				t.Fatal(err)
			}
			out := reencode(t, cfg)
			back, err := Parse("r.yaml", out, nil)
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			if !reflect.DeepEqual(cfg, back) {
				t.Errorf("round trip changed the config:\n%s\n%+v\n%+v", out, cfg, back)
			}
		})
	}
}

// reencode marshals cfg back to YAML that Parse reads as the same config: every "$" in a value is
// doubled, since Parse would otherwise expand ${...} in it.
func reencode(t testing.TB, cfg *Config) []byte {
	t.Helper()
	var n yaml.Node
	if err := n.Encode(cfg); err != nil {
		t.Fatalf("encode: %v", err)
	}
	escapeDollars(&n)
	out, err := yaml.Marshal(&n)
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	return out
}

func escapeDollars(n *yaml.Node) {
	switch n.Kind {
	case yaml.ScalarNode:
		n.Value = strings.ReplaceAll(n.Value, "$", "$$")
	case yaml.MappingNode:
		for i := 1; i < len(n.Content); i += 2 { // values only; keys are never expanded
			escapeDollars(n.Content[i])
		}
	default:
		for _, c := range n.Content {
			escapeDollars(c)
		}
	}
}

// clone deep-copies a Config, so tests can compare a config before and after a change.
func clone(c *Config) *Config { return deepCopy(reflect.ValueOf(c)).Interface().(*Config) }

func deepCopy(v reflect.Value) reflect.Value {
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			return v
		}
		n := reflect.New(v.Type().Elem())
		n.Elem().Set(deepCopy(v.Elem()))
		return n
	case reflect.Slice:
		if v.IsNil() {
			return v
		}
		n := reflect.MakeSlice(v.Type(), v.Len(), v.Len())
		for i := range v.Len() {
			n.Index(i).Set(deepCopy(v.Index(i)))
		}
		return n
	case reflect.Struct:
		n := reflect.New(v.Type()).Elem()
		for i := range v.NumField() {
			n.Field(i).Set(deepCopy(v.Field(i)))
		}
		return n
	default:
		return v
	}
}

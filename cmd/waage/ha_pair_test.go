package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"testing"
)

// TestHAPairExamples validates the configs of examples/ha-pair/ (TestExamplesValidate covers only
// the top level of examples/) and keeps the blocks of the docs that show them verbatim.
func TestHAPairExamples(t *testing.T) {
	clearExampleEnv(t)
	if n := validateExampleDir(t, "ha-pair"); n < 2 {
		t.Fatalf("examples/ha-pair has %d configs, want lb1.yaml and lb2.yaml", n)
	}
	if docsShowExampleDir(t, "ha-pair", filepath.Join(repoRoot, "docs", "vrrp.md")) == 0 {
		t.Error("no doc shows an examples/ha-pair config")
	}
}

// validateExampleDir runs `waage validate` on each config of examples/DIR as a subtest and
// returns how many there are.
func validateExampleDir(t *testing.T, dir string) int {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(repoRoot, "examples", dir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range files {
		t.Run(filepath.Base(path), func(t *testing.T) {
			var out, errOut bytes.Buffer
			if code := run([]string{"validate", "-c", path}, &out, &errOut); code != 0 {
				t.Fatalf("waage validate -c %s: exit %d\n%s", path, code, errOut.String())
			}
			if errOut.Len() != 0 {
				t.Errorf("stderr = %q, want nothing", errOut.String())
			}
		})
	}
	return len(files)
}

// docsShowExampleDir checks that the fenced blocks of docs and of examples/DIR/README.md that
// start with "# examples/DIR/NAME" are that file as it is, and returns how many there are.
func docsShowExampleDir(t *testing.T, dir string, docs ...string) int {
	t.Helper()
	header := regexp.MustCompile(`^# (examples/` + regexp.QuoteMeta(dir) + `/[A-Za-z0-9._-]+)(:.*)?$`)
	shown := 0
	for _, doc := range append(docs, filepath.Join(repoRoot, "examples", dir, "README.md")) {
		data, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range fencedBlocks(string(data)) {
			m := header.FindStringSubmatch(b.firstLine())
			if m == nil {
				continue
			}
			shown++
			want, err := os.ReadFile(filepath.Join(repoRoot, m[1]))
			if err != nil {
				t.Errorf("%s:%d: shows %s, which does not exist", doc, b.line, m[1])
				continue
			}
			if b.text != string(want) {
				t.Errorf("%s:%d: the block differs from %s; copy the file into the doc again", doc, b.line, m[1])
			}
		}
	}
	return shown
}

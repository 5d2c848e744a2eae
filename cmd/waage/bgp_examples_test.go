package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestBGPExamplesValidate runs examples/bgp/*.yaml through `waage validate`, and checks that the
// router configs and docs/bgp.md agree with them on the addresses and AS numbers.
func TestBGPExamplesValidate(t *testing.T) {
	t.Setenv("WAAGE_ADMIN_TOKEN", "")
	files, err := filepath.Glob(filepath.Join(repoRoot, "examples", "bgp", "*.yaml"))
	if err != nil || len(files) != 2 {
		t.Fatalf("examples/bgp/*.yaml: %v %v", files, err)
	}
	for _, path := range files {
		var out, errOut bytes.Buffer
		if code := run([]string{"validate", "-c", path}, &out, &errOut); code != 0 || out.String() != path+": ok\n" || errOut.Len() != 0 {
			t.Errorf("waage validate -c %s: exit %d\n%s%s", path, code, out.String(), errOut.String())
		}
	}
	for _, name := range []string{"router-bird.conf", "router-frr.conf"} {
		b, err := os.ReadFile(filepath.Join(repoRoot, "examples", "bgp", name))
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"10.250.1.2", "10.250.2.2", "65001", "65000", "10.250.100.1/32"} {
			if !strings.Contains(string(b), want) {
				t.Errorf("%s does not mention %s", name, want)
			}
		}
	}
	doc, err := os.ReadFile(filepath.Join(repoRoot, "docs", "bgp.md"))
	if err != nil {
		t.Fatal(err)
	}
	// Every example file the page links to exists.
	for _, m := range regexp.MustCompile(`\(\.\./examples/bgp/([^)#]+)\)`).FindAllStringSubmatch(string(doc), -1) {
		if _, err := os.Stat(filepath.Join(repoRoot, "examples", "bgp", m[1])); err != nil {
			t.Errorf("docs/bgp.md links to %s: %v", m[1], err)
		}
	}
}

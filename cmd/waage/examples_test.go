package main

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// repoRoot is where README.md, docs/ and examples/ live, relative to this package's directory
// (go test runs a package's tests in its source directory).
const repoRoot = "../.."

// exampleEnv lists the environment variables the example configs read with ${NAME:-default}.
// The tests set them empty, which selects the defaults, so that the result does not depend on the
// environment of the machine running them.
var exampleEnv = []string{"WAAGE_ACCESS_LOG", "WAAGE_LISTEN"}

func clearExampleEnv(t *testing.T) {
	t.Helper()
	for _, name := range exampleEnv {
		t.Setenv(name, "")
	}
}

// TestExamplesValidate runs every examples/*.yaml through `waage validate`, exactly as an operator
// would, and expects each to be valid.
func TestExamplesValidate(t *testing.T) {
	clearExampleEnv(t)
	files, err := filepath.Glob(filepath.Join(repoRoot, "examples", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no examples/*.yaml found")
	}
	for _, path := range files {
		t.Run(filepath.Base(path), func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := run([]string{"validate", "-c", path}, &out, &errOut)
			if code != 0 {
				t.Fatalf("waage validate -c %s: exit %d, want 0\nstderr:\n%s", path, code, errOut.String())
			}
			if want := path + ": ok\n"; out.String() != want {
				t.Errorf("stdout = %q, want %q", out.String(), want)
			}
			if errOut.Len() != 0 {
				t.Errorf("stderr = %q, want nothing", errOut.String())
			}
		})
	}
}

// TestValidateBrokenConfig checks what an operator sees for a broken file: exit status 1 and every
// problem at once, each as file:line:col: path: message, in file order.
func TestValidateBrokenConfig(t *testing.T) {
	clearExampleEnv(t)
	path := filepath.Join(t.TempDir(), "broken.yaml")
	const broken = `frontends:
  - name: web
    listen: ["127.0.0.1:8080"]
    routes:
      - match: {path_prefix: api/}
        backend: ap
    default_backend: app
backends:
  - name: app
    algorithm: round-robin
    servers:
      - {address: "127.0.0.1:9001", weight: -1}
      - {address: "127.0.0.1:9002", wieght: 2}
    timeouts: {connect: 5}
`
	if err := os.WriteFile(path, []byte(broken), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	code := run([]string{"validate", "-c", path}, &out, &errOut)
	if code != 1 {
		t.Fatalf("exit %d, want 1\nstdout:\n%s\nstderr:\n%s", code, out.String(), errOut.String())
	}
	if out.Len() != 0 {
		t.Errorf("stdout = %q, want nothing for an invalid file", out.String())
	}
	// The messages' wording may improve; the positions and field paths are the contract.
	want := []string{
		path + ":5:30: frontends[0].routes[0].match.path_prefix: ",
		path + ":6:18: frontends[0].routes[0].backend: ",
		path + ":10:16: backends[0].algorithm: ",
		path + ":12:45: backends[0].servers[0].weight: ",
		path + ":13:37: backends[0].servers[1]: ",
		path + ":14:25: backends[0].timeouts.connect: ",
	}
	lines := strings.Split(strings.TrimRight(errOut.String(), "\n"), "\n")
	if len(lines) != len(want) {
		t.Errorf("got %d error lines, want %d (one per problem):\n%s", len(lines), len(want), errOut.String())
	}
	for i, prefix := range want {
		if i >= len(lines) || !strings.HasPrefix(lines[i], prefix) {
			t.Errorf("error line %d: want prefix %q\nstderr:\n%s", i+1, prefix, errOut.String())
		}
	}
	if !strings.Contains(errOut.String(), `unknown key "wieght"`) {
		t.Errorf("the misspelt key is not named:\n%s", errOut.String())
	}
}

// exampleHeader is the first line of a fenced block in the docs that shows a file of examples/:
// "# examples/NAME" (followed by the end of the line or by a colon and a comment).
var exampleHeader = regexp.MustCompile(`^# (examples/[A-Za-z0-9._-]+)(:.*)?$`)

// TestDocsShowExamplesVerbatim keeps the docs honest: every fenced block in README.md and docs/*.md
// that starts with "# examples/NAME" must be exactly that file, so the configs the docs show are the
// ones TestExamplesValidate checks. Every example file must be shown or linked somewhere.
func TestDocsShowExamplesVerbatim(t *testing.T) {
	docs, err := filepath.Glob(filepath.Join(repoRoot, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	docs = append(docs, filepath.Join(repoRoot, "README.md"))
	mentioned := map[string]bool{}
	for _, doc := range docs {
		data, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range regexp.MustCompile(`examples/[A-Za-z0-9._-]+`).FindAllString(string(data), -1) {
			mentioned[m] = true
		}
		for _, b := range fencedBlocks(string(data)) {
			m := exampleHeader.FindStringSubmatch(b.firstLine())
			if m == nil {
				continue
			}
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
	files, err := filepath.Glob(filepath.Join(repoRoot, "examples", "*"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		name := "examples/" + filepath.Base(f)
		if !mentioned[name] {
			t.Errorf("%s is not shown or linked in README.md or docs/", name)
		}
	}
}

// fencedBlock is the content of one ``` block of a Markdown file.
type fencedBlock struct {
	line int    // line of the opening fence, 1-based
	text string // content, each line ending in "\n"
}

func (b fencedBlock) firstLine() string {
	first, _, _ := strings.Cut(b.text, "\n")
	return first
}

// fencedBlocks returns the ``` blocks of a Markdown document (unindented fences only, which is all
// the docs use).
func fencedBlocks(doc string) []fencedBlock {
	var blocks []fencedBlock
	var cur *fencedBlock
	sc := bufio.NewScanner(strings.NewReader(doc))
	sc.Buffer(nil, 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		switch {
		case cur == nil && strings.HasPrefix(line, "```"):
			cur = &fencedBlock{line: n}
		case cur != nil && line == "```":
			blocks = append(blocks, *cur)
			cur = nil
		case cur != nil:
			cur.text += line + "\n"
		}
	}
	return blocks
}

// TestFencedBlocks pins the little Markdown reader the docs test relies on.
func TestFencedBlocks(t *testing.T) {
	doc := "text\n```yaml\n# examples/a.yaml\nk: v\n```\nmore\n```\nplain\n```\n"
	got := fencedBlocks(doc)
	want := []fencedBlock{{line: 2, text: "# examples/a.yaml\nk: v\n"}, {line: 7, text: "plain\n"}}
	if !slices.Equal(got, want) {
		t.Errorf("fencedBlocks = %+v, want %+v", got, want)
	}
	if m := exampleHeader.FindStringSubmatch(got[0].firstLine()); m == nil || m[1] != "examples/a.yaml" {
		t.Errorf("header match = %q", m)
	}
	if m := exampleHeader.FindStringSubmatch("# examples/waage.service: a unit"); m == nil || m[1] != "examples/waage.service" {
		t.Errorf("header with comment: match = %q", m)
	}
}

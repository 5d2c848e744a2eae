package runtime

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestE2EAccessLog: one JSON access log line per request, with what happened to it.
func TestE2EAccessLog(t *testing.T) {
	t.Parallel()
	bs := startDemo(t, "a")
	logPath := filepath.Join(t.TempDir(), "access.log")
	rt := startWaage(t, `
log: {access: "`+logPath+`", access_format: json}
frontends:
  - name: web
    listen: ["127.0.0.1:0"]
    routes:
      - {name: ok, match: {host: ok.test}, backend: b}
backends:
  - {name: b, servers: [{name: s1, address: "`+bs[0].Addr+`"}]}
`)
	addr := feAddr(t, rt, "web")
	rc := dialRaw(t, addr)
	_, body1 := rc.mustDo(t, get("/ok?x=1", "ok.test", "User-Agent: e2e-agent", "Referer: http://ref.test/"))
	rc.mustDo(t, get("/none", "none.test"))
	rc.mustDo(t, request("POST", "/echo", "ok.test", "hello"))
	rc.mustDo(t, request("HEAD", "/", "ok.test", ""))
	// Refused requests after others: each gets its own line, with the client, and nothing of the
	// requests before it.
	for i := 0; i < 10; i++ {
		rc.mustDo(t, get("/private?token=secret", "ok.test", "User-Agent: secret-agent"))
		bad := dialRaw(t, addr)
		bad.mustDo(t, "POST / HTTP/1.1\r\nHost: ok.test\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx")
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := rt.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	data, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	var got []accessLine
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		var e accessLine
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("access log line is not JSON: %v: %q", err, sc.Text())
		}
		got = append(got, e)
	}
	if len(got) != 24 {
		t.Errorf("%d access log lines for 24 requests:\n%s", len(got), data)
	}
	want := []accessLine{
		{"127.0.0.1", "web", "GET", "ok.test", "/ok?x=1", 200, int64(len(body1)), "ok", "b", "s1", "e2e-agent", "http://ref.test/"},
		{"127.0.0.1", "web", "GET", "none.test", "/none", 404, -1, "", "", "", "", ""},
		{"127.0.0.1", "web", "POST", "ok.test", "/echo", 200, 5, "ok", "b", "s1", "", ""},
		{"127.0.0.1", "web", "HEAD", "ok.test", "/", 200, 0, "ok", "b", "s1", "", ""},
	}
	for _, w := range want {
		found := false
		for _, g := range got {
			if g.Method == w.Method && g.URI == w.URI && g.Status != 400 {
				found = true
				if w.Bytes < 0 {
					w.Bytes = g.Bytes
				}
				if g != w {
					t.Errorf("access log:\n got %+v\nwant %+v", g, w)
				}
			}
		}
		if !found {
			t.Errorf("no access log line for %s %s", w.Method, w.URI)
		}
	}
	var refused, private, noClient, leaked int
	for _, g := range got {
		switch g.Status {
		case 400:
			refused++
			if g.Client != "127.0.0.1" {
				if noClient == 0 {
					t.Errorf("400 line without the client address: %+v", g)
				}
				noClient++
			}
			if g.URI == "/private?token=secret" || g.UserAgent == "secret-agent" || g.Route != "" || g.Server != "" {
				if leaked == 0 {
					t.Errorf("400 line carries another request's data: %+v", g)
				}
				leaked++
			}
		case 200:
			if g.URI == "/private?token=secret" {
				private++
			}
		}
	}
	if noClient+leaked > 0 {
		t.Errorf("of %d lines for refused requests, %d lack the client, %d carry another request's fields", refused, noClient, leaked)
	}
	if refused != 10 || private != 10 {
		t.Errorf("%d lines for refused requests, %d for the others; want 10 and 10", refused, private)
	}
}

type accessLine struct {
	Client    string `json:"client"`
	Frontend  string `json:"frontend"`
	Method    string `json:"method"`
	Host      string `json:"host"`
	URI       string `json:"uri"`
	Status    int    `json:"status"`
	Bytes     int64  `json:"bytes"`
	Route     string `json:"route"`
	Backend   string `json:"backend"`
	Server    string `json:"server"`
	UserAgent string `json:"user_agent"`
	Referer   string `json:"referer"`
}

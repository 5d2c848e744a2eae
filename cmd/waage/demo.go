package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/waage/waage/internal/config"
	"github.com/waage/waage/internal/demo"
	"github.com/waage/waage/internal/runtime"
)

// demoConfig is the configuration `waage demo` runs, in the same YAML a user writes, so that
// -print-config shows a working starting point. %[1]s is the listen address, %[2]s..%[4]s the
// backends' addresses.
const demoConfig = `# waage demo: three demo backends behind one HTTP frontend.
log: {level: info, access: stdout}
frontends:
  - name: demo
    listen: ["%[1]s"]
    routes:
      - name: sticky
        match: {path_prefix: /sticky/}
        backend: sticky
      - name: api
        match: {path_prefix: /api/}
        strip_prefix: /api
        backend: api
        response_headers:
          set: {X-Route: api}
    default_backend: web
backends:
  - name: web
    algorithm: round_robin
    health_check: {type: http, path: /healthz, interval: 2s}
    servers:
      - {name: demo-1, address: "%[2]s"}
      - {name: demo-2, address: "%[3]s"}
      - {name: demo-3, address: "%[4]s"}
  - name: sticky
    algorithm: round_robin
    sticky: {cookie: WAAGE_SRV}
    servers:
      - {name: demo-1, address: "%[2]s"}
      - {name: demo-2, address: "%[3]s"}
      - {name: demo-3, address: "%[4]s"}
  - name: api
    algorithm: least_connections
    servers:
      - {name: demo-1, address: "%[2]s", weight: 1}
      - {name: demo-2, address: "%[3]s", weight: 2}
      - {name: demo-3, address: "%[4]s", weight: 3}
`

func cmdDemo(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("waage demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:8080", "address of the demo balancer")
	printConfig := fs.Bool("print-config", false, "print the demo configuration and exit")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	backends, err := demo.Start(ctx, nil, nil)
	if err != nil {
		fmt.Fprintln(stderr, "waage demo:", err)
		return 1
	}
	defer func() {
		for _, b := range backends {
			b.Close()
		}
	}()
	text := fmt.Sprintf(demoConfig, *listen, backends[0].Addr, backends[1].Addr, backends[2].Addr)
	if *printConfig {
		fmt.Fprint(stdout, text)
		return 0
	}
	cfg, err := config.Parse("demo.yaml", []byte(text), os.LookupEnv)
	if err != nil {
		fmt.Fprintln(stderr, "waage demo:", err)
		return 1
	}
	logger := slog.New(newLogHandler(stderr, cfg.Log))
	rt := runtime.New(logger)
	if err := rt.Apply(cfg); err != nil {
		fmt.Fprintf(stderr, "waage demo: %v\n(is something else using %s? try: waage demo -listen 127.0.0.1:8081)\n", err, *listen)
		return 1
	}
	base := "http://" + rt.Addrs("demo")[0].String()
	var b strings.Builder
	fmt.Fprintf(&b, "\nwaage demo is running. Open:\n\n")
	fmt.Fprintf(&b, "  %s/            round robin over demo-1, demo-2, demo-3 (reload to see it turn)\n", base)
	fmt.Fprintf(&b, "  %s/sticky/     cookie stickiness: the same backend every time\n", base)
	fmt.Fprintf(&b, "  %s/api/        least connections with weights 1:2:3, /api stripped\n", base)
	fmt.Fprintf(&b, "  %s/ws  WebSocket echo through waage\n", strings.Replace(base, "http://", "ws://", 1))
	fmt.Fprintf(&b, "\n  try: curl -s %s/ ; curl -s %s/bytes/1000000 | wc -c\n", base, base)
	fmt.Fprintf(&b, "\nThe demo backends themselves:\n")
	for _, be := range backends {
		fmt.Fprintf(&b, "  %-8s %s/\n", be.Name, be.URL())
	}
	fmt.Fprintf(&b, "\nAccess log below. Press Ctrl-C to stop.\n\n")
	fmt.Fprint(stdout, b.String())

	<-ctx.Done()
	fmt.Fprintln(stdout, "\nstopping...")
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rt.Shutdown(sctx)
	return 0
}

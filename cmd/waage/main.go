// Command waage is a load balancer for HTTP, TCP and UDP: one binary in place of HAProxy, nginx and
// keepalived.
//
//	waage run -c waage.yaml        run in the foreground; SIGHUP reloads
//	waage validate -c waage.yaml   check a config; exit 0 if valid, 1 with every error listed
//	waage demo                     waage plus three built-in demo backends on localhost
//	waage version                  print the version
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	goruntime "runtime"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/waage/waage/internal/config"
	"github.com/waage/waage/internal/runtime"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const usage = `waage - load balancer for HTTP, TCP and UDP

Usage:
  waage run -c FILE        run with a configuration file (SIGHUP reloads it)
  waage validate -c FILE   check a configuration file; exit 1 and list every problem if invalid
  waage demo [-listen ADDR] start waage and three demo backends on localhost
  waage version            print the version

Run "waage COMMAND -h" for a command's flags.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "run":
		return cmdRun(args[1:], stdout, stderr)
	case "validate":
		return cmdValidate(args[1:], stdout, stderr)
	case "demo":
		return cmdDemo(args[1:], stdout, stderr)
	case "version", "-version", "--version":
		fmt.Fprintf(stdout, "waage %s (%s, %s/%s)\n", version, goruntime.Version(), goruntime.GOOS, goruntime.GOARCH)
		return 0
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "waage: unknown command %q\n\n%s", args[0], usage)
	return 2
}

func configFlags(name string, stderr io.Writer) (*flag.FlagSet, *string) {
	fs := flag.NewFlagSet("waage "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("c", "waage.yaml", "configuration file")
	return fs, path
}

func cmdValidate(args []string, stdout, stderr io.Writer) int {
	fs, path := configFlags("validate", stderr)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg, err := config.Load(*path)
	if err == nil {
		if cerr := runtime.Check(cfg); cerr != nil {
			err = fmt.Errorf("%s: %w", *path, cerr)
		}
	}
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	for _, w := range runtime.Warnings(cfg) {
		fmt.Fprintf(stderr, "%s: warning: %s\n", *path, w)
	}
	fmt.Fprintf(stdout, "%s: ok\n", *path)
	return 0
}

func cmdRun(args []string, stdout, stderr io.Writer) int {
	fs, path := configFlags("run", stderr)
	shutdownTimeout := fs.Duration("shutdown-timeout", 30*time.Second, "how long in-flight requests may take to finish on SIGTERM")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile to this file until exit (for performance work)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		pprof.StartCPUProfile(f)
		defer func() { pprof.StopCPUProfile(); f.Close() }()
	}
	cfg, err := config.Load(*path)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	logs := newLogHandler(stderr, cfg.Log)
	logger := slog.New(logs)
	slog.SetDefault(logger)
	rt := runtime.New(logger)
	for _, w := range runtime.Warnings(cfg) {
		logger.Warn(w)
	}
	if err := rt.Apply(cfg); err != nil {
		logger.Error("start failed", "config", *path, "err", err)
		return 1
	}
	logger.Info("waage started", "version", version, "config", *path)

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGINT, syscall.SIGTERM)
	for sig := range sigs {
		if sig == syscall.SIGHUP {
			reload(rt, *path, logger, logs)
			continue
		}
		logger.Info("shutting down", "signal", sig.String(), "timeout", *shutdownTimeout)
		ctx, cancel := context.WithTimeout(context.Background(), *shutdownTimeout)
		err := rt.Shutdown(ctx)
		cancel()
		if err != nil && !errors.Is(err, context.DeadlineExceeded) {
			logger.Error("shutdown", "err", err)
		}
		return 0
	}
	return 0
}

// reload loads the file again and applies it; on any error the running configuration stays.
func reload(rt *runtime.Runtime, path string, logger *slog.Logger, logs *logHandler) {
	cfg, err := config.Load(path)
	if err == nil {
		err = rt.Apply(cfg)
	}
	if err != nil {
		logger.Error("reload refused; the running configuration stays", "config", path, "err", err)
		return
	}
	logs.apply(cfg.Log)
	for _, w := range runtime.Warnings(cfg) {
		logger.Warn(w)
	}
	logger.Info("configuration reloaded", "config", path)
}

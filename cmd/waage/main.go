// Command waage is a load balancer for HTTP, TCP and UDP: one binary in place of HAProxy, nginx and
// keepalived.
//
//	waage run -c waage.yaml        run in the foreground; SIGHUP or a file change reloads, SIGUSR2 upgrades
//	waage validate -c waage.yaml   check a config; exit 0 if valid, 1 with every error listed
//	waage upgrade -pidfile FILE    hand the listening sockets to a new process of the binary
//	waage demo                     waage plus three built-in demo backends on localhost
//	waage version                  print the version
package main

import (
	"context"
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	goruntime "runtime"
	"runtime/pprof"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/waage/waage/internal/config"
	"github.com/waage/waage/internal/gctune"
	"github.com/waage/waage/internal/listener"
	"github.com/waage/waage/internal/runtime"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const usage = `waage - load balancer for HTTP, TCP and UDP

Usage:
  waage run -c FILE        run with a configuration file (SIGHUP or a change of FILE reloads it)
  waage validate -c FILE   check a configuration file; exit 1 and list every problem if invalid
  waage upgrade -pid PID | -pidfile FILE
                           binary upgrade: the running waage starts the binary anew and hands
                           over its listening sockets (as SIGUSR2 does)
  waage ctl [-a ADDR] COMMAND
                           talk to a running waage's admin API: servers, drain B/S, weight B/S N, ...
  waage config push -c FILE | history | show [REV] | rollback REV
                           a cluster's configuration in etcd (--etcd ENDPOINTS --prefix P)
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
	case "ctl":
		return cmdCtl(args[1:], stdout, stderr)
	case "config":
		return cmdConfig(args[1:], stdout, stderr)
	case "upgrade":
		return cmdUpgrade(args[1:], stdout, stderr)
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
	// Before anything can start a child process: the readiness pipe of a binary upgrade.
	ready := takeReadyPipe()
	fs, path := configFlags("run", stderr)
	shutdownTimeout := fs.Duration("shutdown-timeout", 0, "how long in-flight requests and connections may take to finish on SIGTERM, SIGINT or after an upgrade (0: the config's shutdown_timeout, default 30s)")
	upgradeTimeout := fs.Duration("upgrade-timeout", time.Minute, "how long the new process of a binary upgrade (SIGUSR2) may take to become ready")
	pidfile := fs.String("pidfile", "", "write the process ID to this file once serving (a binary upgrade rewrites it with the new process's)")
	watch := fs.Bool("watch", true, "reload when the configuration file changes")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile to this file until exit (for performance work)")
	memProfile := fs.String("memprofile", "", "write an allocation profile to this file at exit (for performance work)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	inherited, err := listener.FromEnv()
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	defer inherited.Close()
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		pprof.StartCPUProfile(f)
		defer func() { pprof.StopCPUProfile(); f.Close() }()
	}
	if *memProfile != "" {
		f, err := os.Create(*memProfile)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		defer func() { pprof.Lookup("allocs").WriteTo(f, 0); f.Close() }()
	}
	data, _ := os.ReadFile(*path)
	cfg, err := config.Load(*path)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	logs := newLogHandler(stderr, cfg.Log)
	logger := slog.New(logs)
	slog.SetDefault(logger)
	d := &daemon{
		path: *path, logger: logger, logs: logs, lastSum: sha256.Sum256(data),
		shutdownTimeout: *shutdownTimeout, upgradeTimeout: *upgradeTimeout, pidfile: *pidfile,
		inherited: inherited, extra: map[string]net.Listener{},
	}
	d.rt = runtime.New(logger)
	d.rt.Inherit(inherited)
	gcCtx, gcStop := context.WithCancel(context.Background())
	defer gcStop()
	gctune.Floor(gcCtx, gctune.DefaultFloor)
	if ready != nil {
		d.rt.AdoptVRRP() // a binary upgrade: keep the virtual IPs the old process holds
	}
	for _, w := range runtime.Warnings(cfg) {
		logger.Warn(w)
	}
	cfg = d.clusterStart(cfg) // a node of a cluster starts with the local copy of its config
	if err := d.rt.Apply(cfg); err != nil {
		logger.Error("start failed", "config", *path, "err", err)
		return 1
	}
	d.joinCluster()
	defer d.leaveCluster()
	d.startKube(cfg)
	defer d.stopKube()
	adm := startAdmin(d, cfg)
	d.mu.Lock() // a cluster's configuration may reload meanwhile
	d.admin = adm
	d.mu.Unlock()
	d.clusterAdmin(adm)
	defer d.admin.close()
	if names := inherited.Close(); len(names) > 0 {
		logger.Info("closed inherited sockets the configuration no longer has", "sockets", names)
	}
	if err := writePidfile(*pidfile); err != nil {
		logger.Error("pid file", "err", err)
	}
	if ready != nil {
		if err := signalReady(ready); err != nil {
			logger.Error("telling the previous process that this one is ready", "err", err)
		}
		logger.Info("waage started, taking over from the previous process", "version", version, "config", *path, "previous_pid", os.Getppid())
	} else {
		logger.Info("waage started", "version", version, "config", *path)
	}
	sdNotify(sdReady("serving"))
	if *watch {
		w, err := watchConfig(*path, logger, func() { d.reloadConfig("file") })
		if err != nil {
			logger.Warn("the configuration file is not watched; reload with SIGHUP", "err", err)
		}
		d.watcher = w
	}
	return d.loop()
}

// daemon is a running `waage run`: the runtime and what reloads, upgrades and stops it.
type daemon struct {
	path            string
	rt              *runtime.Runtime
	logger          *slog.Logger
	logs            *logHandler
	shutdownTimeout time.Duration
	upgradeTimeout  time.Duration
	pidfile         string
	watcher         *configWatcher
	inherited       *listener.Inherited
	admin           *adminAPI

	mu sync.Mutex // serialises reloads, and reloads with the start of a shutdown
	// lastSum is the hash of the file content last loaded: the watcher skips a reload when the
	// content did not change (a touch, or the change a SIGHUP already applied).
	lastSum  [sha256.Size]byte
	stopping bool
	// extra are listening sockets outside the runtime (the admin API's), by name, handed over in
	// a binary upgrade as the runtime's are; see listen.
	extra map[string]net.Listener
	// kube joins the Kubernetes provider's config to the file's (kubernetes.go); nil without one.
	// kubeFile is the file's config last applied, which the provider's translations join.
	kube        *kubeHook
	kubeFile    *config.Config
	kubeRestart sync.Mutex // restartKube's, held while a provider stops and one starts
	// cluster joins the cluster's config from etcd to the file's (cluster.go); nil without one.
	cluster *clusterHook
}

// loop handles signals until the process should exit, and returns its exit status.
func (d *daemon) loop() int {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGINT, syscall.SIGTERM, syscall.SIGUSR2)
	defer signal.Stop(sigs)
	var up *upgrade
	var upDone chan error
	for {
		select {
		case sig := <-sigs:
			switch sig {
			case syscall.SIGHUP:
				d.reloadConfig("signal")
			case syscall.SIGUSR2:
				if up != nil {
					d.logger.Warn("upgrade already in progress; SIGUSR2 ignored", "pid", up.pid)
					continue
				}
				sdNotify(sdReloading())
				var err error
				if up, err = d.startUpgrade(); err != nil {
					d.logger.Error("upgrade failed; this process keeps serving", "err", err)
					sdNotify(sdReady("serving; upgrade failed"))
					up = nil
					continue
				}
				upDone = up.done
			default:
				if up != nil {
					d.logger.Info("stopping the upgrade in progress", "pid", up.pid)
					up.abort()
				}
				d.logger.Info("shutting down", "signal", sig.String(), "timeout", d.stopTimeout())
				sdNotify("STOPPING=1")
				d.shutdown()
				return 0
			}
		case err := <-upDone:
			pid := up.pid
			took := time.Since(up.start)
			up, upDone = nil, nil
			if err != nil {
				d.logger.Error("upgrade failed; this process keeps serving", "err", err)
				if werr := writePidfile(d.pidfile); werr != nil {
					d.logger.Error("pid file", "err", werr)
				}
				sdNotify(sdReady("serving; upgrade failed"))
				continue
			}
			d.logger.Info("upgrade: the new process is ready; this one stops accepting and drains", "pid", pid, "handover", took.Round(time.Millisecond), "timeout", d.stopTimeout())
			sdNotify(fmt.Sprintf("MAINPID=%d", pid))
			d.rt.HandOverVRRP() // leave the virtual IPs to the new process, not to the peer
			d.shutdown()
			return 0
		}
	}
}

// reloadConfig loads the configuration file again and applies it. trigger says what asked for it
// ("signal", "file", "api"), for the log. On any error the running configuration stays, and the
// error (every problem in the file) is returned and logged. Reloads are serialised; the admin
// API's POST /api/reload calls this too.
func (d *daemon) reloadConfig(trigger string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.stopping {
		return errors.New("waage is shutting down")
	}
	data, rerr := os.ReadFile(d.path)
	if rerr == nil {
		sum := sha256.Sum256(data)
		if trigger == "file" && sum == d.lastSum {
			return nil
		}
		d.lastSum = sum
	}
	sdNotify(sdReloading())
	// No MAINPID here: during an upgrade the new process may already have claimed it.
	defer sdNotify("READY=1\nSTATUS=serving")
	start := time.Now()
	cfg, err := d.loadConfig()
	var kubeChanged bool
	if err == nil {
		kubeChanged = d.kubeChangedLocked(cfg)
		err = d.rt.Apply(d.withKube(cfg))
	}
	if err != nil {
		d.logger.Error("reload refused; the running configuration stays", "config", d.path, "trigger", trigger, "err", err)
		return err
	}
	d.kubeFile = cfg
	if kubeChanged {
		go d.restartKube() // it waits for the old provider to stop, without d.mu
	}
	d.logs.apply(cfg.Log)
	d.admin.reloaded(cfg)
	for _, w := range runtime.Warnings(cfg) {
		d.logger.Warn(w)
	}
	d.logger.Info("configuration reloaded", "config", d.path, "trigger", trigger, "took", time.Since(start).Round(time.Microsecond))
	return nil
}

// listen returns a listening socket for a server outside the runtime (the admin API): the one
// inherited under name in a binary upgrade, or a new one bound to addr. The socket is handed
// over under the same name in the next upgrade, so the new process does not find the address
// taken; calling listen again with the name replaces the entry (the caller closes the old one).
func (d *daemon) listen(name, addr string) (net.Listener, error) {
	ln, err := d.inherited.Listener("tcp " + name + " " + addr)
	if ln != nil {
		d.logger.Info("adopted inherited listener", "addr", ln.Addr().String(), "for", name)
	}
	if ln == nil && err == nil {
		ln, err = net.Listen("tcp", addr)
	}
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	d.extra[name+" "+addr] = ln
	for key := range d.extra {
		if strings.HasPrefix(key, name+" ") && key != name+" "+addr {
			delete(d.extra, key)
		}
	}
	d.mu.Unlock()
	return ln, nil
}

// sockets are duplicates of every listening socket to hand to a new process, by name.
func (d *daemon) sockets() (map[string]*os.File, error) {
	socks, err := d.rt.Sockets()
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for key, ln := range d.extra {
		sc, ok := ln.(syscall.Conn)
		if !ok {
			continue
		}
		f, err := listener.Dup(sc)
		if err != nil {
			d.logger.Warn("not handing over a socket", "socket", key, "err", err)
			continue
		}
		socks["tcp "+key] = f
	}
	return socks, nil
}

// acceptGrace is how long a shutdown keeps serving connections accepted just before it stopped
// accepting, before it closes those that are idle.
const acceptGrace = 200 * time.Millisecond

// stopTimeout is -shutdown-timeout when given, else the running config's shutdown_timeout.
func (d *daemon) stopTimeout() time.Duration {
	if d.shutdownTimeout > 0 {
		return d.shutdownTimeout
	}
	if cfg := d.rt.Config(); cfg != nil && cfg.ShutdownTimeout > 0 {
		return cfg.ShutdownTimeout.D()
	}
	return 30 * time.Second
}

// shutdown stops accepting, lets requests and connections in flight finish for up to the shutdown
// timeout, and closes what is left.
func (d *daemon) shutdown() {
	d.mu.Lock()
	d.stopping = true
	d.mu.Unlock()
	d.watcher.Close()
	d.leaveCluster() // the others take this node's share of the request rates while it drains
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), d.stopTimeout())
	// Stop accepting first and serve on for a moment: a connection accepted just before has its
	// first request on the way, and Shutdown would close it as idle. (After an upgrade the new
	// process accepts on the same sockets meanwhile.) With BGP, the routes go before that.
	d.rt.WithdrawBGP()
	d.rt.StopAccepting()
	go d.admin.close() // its requests finish meanwhile
	select {
	case <-time.After(acceptGrace):
	case <-ctx.Done():
	}
	err := d.rt.Shutdown(ctx)
	cancel()
	if err != nil && !errors.Is(err, context.DeadlineExceeded) {
		d.logger.Error("shutdown", "err", err)
	}
	removePidfile(d.pidfile)
	d.logger.Info("stopped", "took", time.Since(start).Round(time.Millisecond), "cut_short", err != nil)
}

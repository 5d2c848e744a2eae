package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"text/tabwriter"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/waage/waage/internal/admin"
	"github.com/waage/waage/internal/cluster"
	"github.com/waage/waage/internal/config"
	"github.com/waage/waage/internal/runtime"
)

// clusterHook makes `waage run` a node of a cluster when its file has an etcd section: the file
// gives the node-local sections, etcd (or, until etcd answers, the local copy) the rest.
type clusterHook struct {
	etcd config.Etcd // defaults applied, paths resolved
	// cur is the cluster configuration in force (nil: none yet, the file's own frontends and
	// backends serve); under d.mu.
	cur   *cluster.Revision
	rc    *runtime.Cluster
	admin atomic.Pointer[adminAPI]
}

// clusterStart prepares a node when cfg (the file) has an etcd section: it reads the local copy
// of the last cluster configuration and returns what to start with, the copy merged with the
// file, so the node serves before etcd answers (and whether it does). The etcd section is read
// once, at start.
func (d *daemon) clusterStart(cfg *config.Config) *config.Config {
	if cfg.Etcd == nil {
		return cfg
	}
	e := cfg.Etcd.WithDefaults()
	e.ResolvePaths(filepath.Dir(d.path))
	d.cluster = &clusterHook{etcd: e}
	r, err := cluster.LoadLocalCopy(e)
	if err != nil {
		d.logger.Warn("local copy of the cluster configuration not read", "err", err)
	}
	if r == nil {
		d.logger.Info("no local copy of the cluster configuration yet; serving the file's own until etcd answers", "copy", cluster.LocalCopyPath(e))
		return cfg
	}
	merged, err := d.mergeCluster(cfg, r)
	if err != nil {
		d.logger.Error("local copy of the cluster configuration refused; serving the file's own until etcd answers", "copy", cluster.LocalCopyPath(e), "err", err)
		return cfg
	}
	d.cluster.cur = r
	d.logger.Info("serving the local copy of the cluster configuration until etcd answers", "revision", r.Rev, "copy", cluster.LocalCopyPath(e))
	return merged
}

// mergeCluster parses a cluster configuration and joins it with the node's file. Relative paths
// in it resolve against the directory of the node's file.
func (d *daemon) mergeCluster(local *config.Config, r *cluster.Revision) (*config.Config, error) {
	cl, err := config.ParseAt(r.Name(d.cluster.etcd.Prefix), []byte(r.YAML), filepath.Dir(d.path), os.LookupEnv)
	if err != nil {
		return nil, err
	}
	return config.MergeCluster(cl, local), nil
}

// loadConfig loads the file, merged with the cluster configuration in force on a node: what
// every reload applies. It runs under d.mu.
func (d *daemon) loadConfig() (*config.Config, error) {
	local, err := config.Load(d.path)
	if err != nil || d.cluster == nil || d.cluster.cur == nil {
		return local, err
	}
	return d.mergeCluster(local, d.cluster.cur)
}

// joinCluster connects the node to etcd in the background.
func (d *daemon) joinCluster() {
	h := d.cluster
	if h == nil {
		return
	}
	var rev int64
	if h.cur != nil {
		rev = h.cur.Rev
	}
	rc, err := d.rt.JoinCluster(runtime.ClusterOptions{
		Etcd: h.etcd, Version: version, Revision: rev,
		Admin: func() string {
			if a := h.admin.Load(); a != nil {
				if addr := a.srv.Addr(); addr != nil {
					return addr.String()
				}
			}
			return ""
		},
		Config: d.applyClusterConfig,
	})
	if err != nil {
		d.logger.Error("not joining the cluster; serving on its own", "err", err)
		return
	}
	h.rc = rc
	d.logger.Info("joining the cluster", "node", h.etcd.NodeName, "endpoints", strings.Join(h.etcd.Endpoints, ","), "prefix", h.etcd.Prefix)
}

// clusterAdmin tells the node its admin API, for its membership entry.
func (d *daemon) clusterAdmin(a *adminAPI) {
	if d.cluster != nil && d.cluster.rc != nil {
		d.cluster.admin.Store(a)
		d.cluster.rc.Node().Refresh()
	}
}

// leaveCluster removes the node from the membership list and stops watching.
func (d *daemon) leaveCluster() {
	if d.cluster != nil && d.cluster.rc != nil {
		d.cluster.rc.Stop()
	}
}

// adminSource is what the admin API shows and changes: on a node, the runtime with its changes
// shared through etcd.
func (d *daemon) adminSource() admin.Source {
	if d.cluster != nil && d.cluster.rc != nil {
		return d.cluster.rc.Source()
	}
	return d.rt
}

// applyClusterConfig applies a configuration from etcd through the reload path that SIGHUP takes,
// with the new cluster configuration in place of the old.
func (d *daemon) applyClusterConfig(r *cluster.Revision) error {
	d.mu.Lock()
	prev := d.cluster.cur
	d.cluster.cur = r
	d.mu.Unlock()
	if err := d.reloadConfig("etcd"); err != nil {
		d.mu.Lock()
		if d.cluster.cur == r {
			d.cluster.cur = prev
		}
		d.mu.Unlock()
		return err
	}
	return nil
}

const configUsage = `Usage: waage config COMMAND [flags]

Manages the configuration of a cluster of waage nodes in etcd (docs/cluster.md).

Commands:
  push -c FILE      validate FILE as "waage validate" does and, if valid, make it the cluster's
                    configuration; every node applies it within a second
  history [-n N]    the configurations pushed, newest first, with their revisions
  show [REV]        the configuration of a revision (default the newest)
  rollback REV      push the configuration of revision REV again (validated again)

etcd is named by --etcd (comma-separated host:port or URLs; default $WAAGE_ETCD, or the etcd
section of the file pushed) and --prefix (default $WAAGE_ETCD_PREFIX, that section's, or /waage/).

Flags:
`

// cmdConfig is `waage config`.
func cmdConfig(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("waage config", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, configUsage)
		fs.PrintDefaults()
	}
	file := fs.String("c", "", "push: the configuration file")
	endpoints := fs.String("etcd", os.Getenv("WAAGE_ETCD"), "etcd endpoints, comma-separated")
	prefix := fs.String("prefix", os.Getenv("WAAGE_ETCD_PREFIX"), "the cluster's key prefix (default /waage/)")
	ca := fs.String("ca", "", "CA bundle to verify etcd with")
	cert := fs.String("cert", "", "client certificate for etcd")
	key := fs.String("key", "", "client key for etcd")
	n := fs.Int("n", 20, "history: how many revisions")
	wait := fs.Duration("wait", 0, "push, rollback: wait up to this long until every live node runs the new revision")
	timeout := fs.Duration("timeout", 10*time.Second, "how long etcd may take to answer")
	pos, status := parseInterspersed(fs, args)
	if pos == nil {
		return status
	}
	fail := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "waage config %s: %s\n", pos[0], fmt.Sprintf(format, a...))
		return 1
	}
	usage := func(msg string) int {
		fmt.Fprintf(stderr, "waage config %s: %s\n", pos[0], msg)
		return 2
	}
	e := config.Etcd{Prefix: *prefix}
	if *endpoints != "" {
		e.Endpoints = strings.Split(*endpoints, ",")
	}
	if *ca != "" || *cert != "" || *key != "" {
		e.TLS = &config.EtcdTLS{CA: *ca, Cert: *cert, Key: *key}
	}

	var pushed *config.Config
	switch pos[0] {
	case "push":
		if len(pos) != 1 || *file == "" {
			return usage("want push -c FILE")
		}
		cfg, ok := validateFile(*file, stderr)
		if !ok {
			return 1
		}
		pushed = cfg
		if fe := cfg.Etcd; fe != nil {
			fd := fe.WithDefaults()
			fd.ResolvePaths(filepath.Dir(*file))
			if len(e.Endpoints) == 0 {
				e.Endpoints = fd.Endpoints
			}
			if e.Prefix == "" {
				e.Prefix = fd.Prefix
			}
			if e.TLS == nil {
				e.TLS = fd.TLS
			}
		}
	case "history", "show", "rollback":
		if *file != "" {
			return usage("-c: only for push")
		}
	default:
		return usage(fmt.Sprintf("unknown command %q (want push, history, show or rollback)", pos[0]))
	}
	if len(e.Endpoints) == 0 {
		return usage("no etcd endpoints: give --etcd host:port[,host:port...] or set WAAGE_ETCD")
	}
	for _, ep := range e.Endpoints {
		if !config.ValidEtcdEndpoint(ep) {
			return usage(fmt.Sprintf("--etcd: invalid endpoint %q: want host:port or an http(s) URL", ep))
		}
	}
	e = e.WithDefaults()
	if !config.ValidEtcdPrefix(e.Prefix) {
		return usage(fmt.Sprintf("--prefix %q: want an absolute key path such as /waage/prod/", e.Prefix))
	}
	if pushed != nil && pushed.Etcd != nil {
		// The file's own etcd section names the cluster it is meant for: refuse to push it to
		// another one (a staging configuration to production, say).
		if fp := pushed.Etcd.WithDefaults().Prefix; fp != e.Prefix {
			return fail("%s: etcd.prefix is %s, but the push goes to %s", *file, fp, e.Prefix)
		}
	}
	cli, err := cluster.Dial(e)
	if err != nil {
		return fail("%v", err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	cc := &configCmd{cli: cli, prefix: e.Prefix, out: stdout, errOut: stderr, wait: *wait}

	switch pos[0] {
	case "push":
		data, err := os.ReadFile(*file)
		if err != nil {
			return fail("%v", err)
		}
		if local := config.PushedNodeLocal(pushed); len(local) > 0 {
			fmt.Fprintf(stderr, "%s: note: the nodes take %s from their own files; these sections of the pushed file do not apply\n", *file, strings.Join(local, ", "))
		}
		abs, _ := filepath.Abs(*file)
		return cc.push(ctx, cluster.Envelope{YAML: string(data), By: whoami(), Source: abs}, *file)
	case "history":
		if len(pos) != 1 {
			return usage("want history [-n N]")
		}
		if *n < 1 {
			return usage("-n: want 1 or more")
		}
		if err := cc.history(ctx, *n); err != nil {
			return fail("%v", err)
		}
		return 0
	case "show":
		var rev int64
		if len(pos) > 2 {
			return usage("want show [REV]")
		}
		if len(pos) == 2 {
			if rev, err = strconv.ParseInt(pos[1], 10, 64); err != nil || rev < 1 {
				return usage(fmt.Sprintf("%q: want a revision number", pos[1]))
			}
		}
		r, err := cluster.Get(ctx, cli, e.Prefix, rev)
		if err != nil {
			return fail("%v", err)
		}
		if r == nil {
			return fail("no configuration under %s yet", e.Prefix)
		}
		fmt.Fprint(stdout, r.YAML)
		return 0
	default: // rollback
		if len(pos) != 2 {
			return usage("want rollback REV")
		}
		rev, err := strconv.ParseInt(pos[1], 10, 64)
		if err != nil || rev < 1 {
			return usage(fmt.Sprintf("%q: want a revision number (waage config history lists them)", pos[1]))
		}
		r, err := cluster.Get(ctx, cli, e.Prefix, rev)
		if err != nil {
			return fail("%v", err)
		}
		if r == nil {
			return fail("revision %d: no configuration", rev)
		}
		// Validated again: this build may be stricter than the one that pushed it, or a file it
		// names may have changed. Relative paths resolve against the current directory.
		name := r.Name(e.Prefix)
		cfg, err := config.ParseAt(name, []byte(r.YAML), ".", os.LookupEnv)
		if err == nil {
			if cerr := runtime.Check(cfg); cerr != nil {
				err = fmt.Errorf("%s: %w", name, cerr)
			}
		}
		if err != nil {
			fmt.Fprintln(stderr, err)
			return fail("revision %d is not valid; nothing changed", rev)
		}
		return cc.push(ctx, cluster.Envelope{YAML: r.YAML, By: whoami(), Source: fmt.Sprintf("rollback to %d", rev)}, fmt.Sprintf("revision %d", rev))
	}
}

// validateFile runs what `waage validate` runs; it prints the problems, each with file:line.
func validateFile(path string, stderr io.Writer) (*config.Config, bool) {
	cfg, err := config.Load(path)
	if err == nil {
		if cerr := runtime.Check(cfg); cerr != nil {
			err = fmt.Errorf("%s: %w", path, cerr)
		}
	}
	if err != nil {
		fmt.Fprintln(stderr, err)
		fmt.Fprintf(stderr, "%s: not pushed; the cluster's configuration did not change\n", path)
		return nil, false
	}
	for _, w := range runtime.Warnings(cfg) {
		fmt.Fprintf(stderr, "%s: warning: %s\n", path, w)
	}
	return cfg, true
}

// whoami is user@host, for the history.
func whoami() string {
	name := "unknown"
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	host, _ := os.Hostname()
	return name + "@" + host
}

// configCmd is one `waage config` invocation against etcd.
type configCmd struct {
	cli    *clientv3.Client
	prefix string
	out    io.Writer
	errOut io.Writer
	wait   time.Duration
}

func (c *configCmd) push(ctx context.Context, env cluster.Envelope, what string) int {
	rev, err := cluster.Push(ctx, c.cli, c.prefix, env)
	if err != nil {
		fmt.Fprintf(c.errOut, "waage config: %s: not pushed: %v\n", what, err)
		return 1
	}
	fmt.Fprintf(c.out, "pushed %s to %s as revision %d\n", what, c.prefix, rev)
	if c.wait <= 0 {
		return 0
	}
	start := time.Now()
	for {
		ms, err := cluster.ListMembers(ctx, c.cli, c.prefix)
		behind := []string{}
		for _, m := range ms {
			if m.ConfigRevision < rev {
				behind = append(behind, m.Name)
			}
		}
		if err == nil && len(behind) == 0 {
			fmt.Fprintf(c.out, "all %d live nodes run revision %d (%v)\n", len(ms), rev, time.Since(start).Round(time.Millisecond))
			return 0
		}
		if time.Since(start) > c.wait {
			fmt.Fprintf(c.errOut, "waage config: after %v, nodes not yet on revision %d: %s\n", c.wait, rev, strings.Join(behind, ", "))
			return 1
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (c *configCmd) history(ctx context.Context, n int) error {
	revs, err := cluster.History(ctx, c.cli, c.prefix, n)
	if err != nil && len(revs) == 0 {
		return err
	}
	if len(revs) == 0 {
		fmt.Fprintf(c.out, "no configuration under %s yet\n", c.prefix)
		return nil
	}
	tw := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "REVISION\tPUSHED\tBY\tSOURCE")
	for i, r := range revs {
		rev := strconv.FormatInt(r.Rev, 10)
		if i == 0 {
			rev += " (current)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", rev, r.Time.Local().Format("2006-01-02 15:04:05"), r.By, r.Source)
	}
	tw.Flush()
	if last := revs[len(revs)-1]; last.Prev != 0 && len(revs) < n {
		fmt.Fprintf(c.out, "(older revisions were compacted away by etcd)\n")
	}
	return nil
}

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"github.com/waage/waage/internal/adminapi"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

const ctlUsage = `Usage: waage ctl [flags] COMMAND [ARGS]

Talks to the admin API of a running waage (admin.listen).

Commands:
  servers [BACKEND]          every server: state, health, weight, traffic, last check
  backends                   backends with their server counts and traffic
  frontends                  frontends with their addresses and traffic
  drain BACKEND/SERVER       no new traffic; sticky sessions and open connections finish
  ready BACKEND/SERVER       take traffic again (also: enable)
  maintenance BACKEND/SERVER no traffic at all
  weight BACKEND/SERVER N    set the weight (0 to 1000)
  reload                     load the configuration file again
  config                     the running configuration (secrets redacted)
  events                     recent health and state changes
  deny CIDR [-ttl 10m]       block a source (address or CIDR) on every frontend; without -ttl
                             until lifted
  undeny CIDR                lift a block made by deny
  denied                     the blocks in force
  top [-n 20]                the busiest sources: request and connection rates, open
                             connections, refusals
  vrrp                       VRRP instances: state, priority, master, last transition
  nodes                      the nodes of the cluster (etcd) and their state
  cluster                    this node's connection to the cluster: etcd, revision, last error
  bgp                        the BGP speaker: announced prefixes and why, sessions
  node drain | undrain       withdraw this node's BGP routes and serve only the open
                             connections; announce again

Changes need the admin token: -token, or WAAGE_TOKEN in the environment.

Flags:
`

// defaultAdminAddr is where ctl looks without -a or WAAGE_ADMIN.
const defaultAdminAddr = "127.0.0.1:9900"

// defaultTop is how many sources `top` shows without -n, as the API's default.
const defaultTop = 20

// ctl is one `waage ctl` invocation.
type ctl struct {
	base   *url.URL
	token  string
	json   bool
	client *http.Client
	out    io.Writer
	ttl    time.Duration // deny -ttl; 0: until lifted
	top    int           // top -n
	set    map[string]bool
}

// ctlError is an error answer of the API.
type ctlError struct {
	status int
	msg    string
}

func (e *ctlError) Error() string {
	return fmt.Sprintf("%d %s: %s", e.status, http.StatusText(e.status), e.msg)
}

func cmdCtl(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("waage ctl", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, ctlUsage)
		fs.PrintDefaults()
	}
	addr := fs.String("a", envOr("WAAGE_ADMIN", defaultAdminAddr), "admin API address: host:port or a URL (default $WAAGE_ADMIN or "+defaultAdminAddr+")")
	token := fs.String("token", "", "admin token for changes (default $WAAGE_TOKEN)")
	output := fs.String("o", "table", "output: table or json")
	timeout := fs.Duration("timeout", 30*time.Second, "how long to wait for an answer")
	ttl := fs.Duration("ttl", 0, "deny: how long the block lasts, e.g. 10m (default: until lifted)")
	topN := fs.Int("n", defaultTop, "top: how many sources to show (1 to 1000)")
	pos, status := parseInterspersed(fs, args)
	if pos == nil {
		return status
	}
	if pos[0] == "help" {
		fs.SetOutput(stdout)
		fmt.Fprint(stdout, ctlUsage)
		fs.PrintDefaults()
		return 0
	}
	if *output != "table" && *output != "json" {
		fmt.Fprintf(stderr, "waage ctl: -o %s: want table or json\n", *output)
		return 2
	}
	base, err := adminURL(*addr)
	if err != nil {
		fmt.Fprintf(stderr, "waage ctl: -a %s: %v\n", *addr, err)
		return 2
	}
	tok := *token
	if tok == "" {
		tok = os.Getenv("WAAGE_TOKEN")
	}
	if tok == "" {
		tok = os.Getenv("WAAGE_ADMIN_TOKEN")
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	c := &ctl{base: base, token: tok, json: *output == "json", client: &http.Client{Timeout: *timeout}, out: stdout,
		ttl: *ttl, top: *topN, set: set}
	if err := c.run(pos[0], pos[1:]); err != nil {
		var ue usageError
		if errors.As(err, &ue) {
			fmt.Fprintf(stderr, "waage ctl: %v\n\n", err)
			fs.Usage()
			return 2
		}
		fmt.Fprintf(stderr, "waage ctl: %s: %v\n", pos[0], err)
		return 1
	}
	return 0
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// adminURL turns -a into the API's base URL: host:port, :port (loopback) or an http(s) URL.
func adminURL(addr string) (*url.URL, error) {
	if !strings.Contains(addr, "://") {
		if strings.HasPrefix(addr, ":") {
			addr = "127.0.0.1" + addr
		}
		addr = "http://" + addr
	}
	u, err := url.Parse(addr)
	if err != nil {
		return nil, err
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return nil, errors.New("want host:port or an http:// or https:// URL")
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	return u, nil
}

// usageError is a mistake in the command line (exit status 2).
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func (c *ctl) run(cmd string, args []string) error {
	want := func(n int, shape string) error {
		if len(args) != n {
			return usageError{fmt.Sprintf("%s: want %s", cmd, shape)}
		}
		return nil
	}
	// -ttl and -n belong to one command each.
	if c.set["ttl"] && cmd != "deny" {
		return usageError{"-ttl: only for deny"}
	}
	if c.set["n"] && cmd != "top" {
		return usageError{"-n: only for top"}
	}
	switch cmd {
	case "servers":
		if len(args) > 1 {
			return usageError{"servers: want at most one backend name"}
		}
		return c.servers(args)
	case "backends":
		if err := want(0, "no arguments"); err != nil {
			return err
		}
		return c.backends()
	case "frontends":
		if err := want(0, "no arguments"); err != nil {
			return err
		}
		return c.frontends()
	case "drain", "ready", "enable", "maintenance":
		if err := want(1, "BACKEND/SERVER"); err != nil {
			return err
		}
		action := cmd
		if action == "enable" {
			action = "ready"
		}
		b, s, err := splitServer(args[0])
		if err != nil {
			return err
		}
		return c.serverChange(http.MethodPost, b, s, action, nil)
	case "weight":
		if err := want(2, "BACKEND/SERVER WEIGHT"); err != nil {
			return err
		}
		b, s, err := splitServer(args[0])
		if err != nil {
			return err
		}
		w, err := strconv.Atoi(args[1])
		if err != nil {
			return usageError{fmt.Sprintf("weight: %q is not a number", args[1])}
		}
		return c.serverChange(http.MethodPut, b, s, "weight", map[string]int{"weight": w})
	case "reload":
		if err := want(0, "no arguments"); err != nil {
			return err
		}
		var raw json.RawMessage
		if err := c.call(http.MethodPost, "/api/reload", nil, &raw); err != nil {
			return err
		}
		if c.json {
			return c.printJSON(raw)
		}
		fmt.Fprintln(c.out, "configuration reloaded")
		return nil
	case "config":
		if err := want(0, "no arguments"); err != nil {
			return err
		}
		if c.json {
			var raw json.RawMessage
			if err := c.call(http.MethodGet, "/api/config", nil, &raw); err != nil {
				return err
			}
			return c.printJSON(raw)
		}
		body, err := c.do(http.MethodGet, "/api/config?format=yaml", nil)
		if err != nil {
			return err
		}
		_, err = c.out.Write(body)
		return err
	case "events":
		if err := want(0, "no arguments"); err != nil {
			return err
		}
		return c.events()
	case "deny":
		if err := want(1, "CIDR [-ttl DURATION]"); err != nil {
			return err
		}
		if c.ttl < 0 {
			return usageError{fmt.Sprintf("-ttl %s: must not be negative", c.ttl)}
		}
		return c.deny(args[0])
	case "undeny":
		if err := want(1, "CIDR"); err != nil {
			return err
		}
		return c.undeny(args[0])
	case "denied":
		if err := want(0, "no arguments"); err != nil {
			return err
		}
		return c.denied()
	case "top":
		if err := want(0, "no arguments (-n N for how many)"); err != nil {
			return err
		}
		if c.top < 1 || c.top > 1000 {
			return usageError{fmt.Sprintf("-n %d: want 1 to 1000", c.top)}
		}
		return c.topSources()
	case "vrrp":
		if err := want(0, "no arguments"); err != nil {
			return err
		}
		return c.vrrp()
	case "nodes", "cluster":
		if err := want(0, "no arguments"); err != nil {
			return err
		}
		return c.cluster(cmd)
	case "bgp":
		if err := want(0, "no arguments"); err != nil {
			return err
		}
		return c.bgp()
	case "node":
		if len(args) != 1 || (args[0] != "drain" && args[0] != "undrain") {
			return usageError{"node: want drain or undrain"}
		}
		return c.node(args[0])
	}
	return usageError{fmt.Sprintf("unknown command %q", cmd)}
}

// splitServer reads BACKEND/SERVER (a server name may contain '/' only if the backend does not).
func splitServer(arg string) (string, string, error) {
	b, s, ok := strings.Cut(arg, "/")
	if !ok || b == "" || s == "" {
		return "", "", usageError{fmt.Sprintf("%q: want BACKEND/SERVER", arg)}
	}
	return b, s, nil
}

// do sends one request and returns the body of a 2xx answer, or the API's error.
func (c *ctl) do(method, path string, body any) ([]byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	ctx := context.Background()
	req, err := http.NewRequestWithContext(ctx, method, c.base.String()+path, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("cannot reach the admin API at %s: %w", c.base, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("reading the answer: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		var e adminapi.Error
		if json.Unmarshal(data, &e) != nil || e.Error == "" {
			e.Error = strings.TrimSpace(string(data))
		}
		if resp.StatusCode == http.StatusUnauthorized && c.token == "" {
			e.Error += " (pass -token or set WAAGE_TOKEN)"
		}
		return nil, &ctlError{status: resp.StatusCode, msg: e.Error}
	}
	return data, nil
}

// call is do with a JSON answer decoded into v.
func (c *ctl) call(method, path string, body, v any) error {
	data, err := c.do(method, path, body)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("the admin API answered something else than JSON: %w", err)
	}
	return nil
}

func (c *ctl) printJSON(v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(c.out, "%s\n", b)
	return err
}

func (c *ctl) getBackends() ([]adminapi.Backend, error) {
	var out adminapi.Backends
	err := c.call(http.MethodGet, "/api/backends", nil, &out)
	return out.Backends, err
}

func newTable(w io.Writer, header ...string) *tabwriter.Writer {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	return tw
}

func row(tw io.Writer, cols ...any) {
	s := make([]string, len(cols))
	for i, c := range cols {
		s[i] = fmt.Sprint(c)
	}
	fmt.Fprintln(tw, strings.Join(s, "\t"))
}

func healthText(s adminapi.Server) string {
	switch {
	case s.Health == "down":
		return "DOWN"
	case s.Ejected:
		return "EJECTED"
	}
	return "up"
}

// msText formats milliseconds in ASCII (no µ), for tables that scripts may grep.
func msText(ms float64) string {
	switch {
	case ms <= 0:
		return "-"
	case ms < 10:
		return fmt.Sprintf("%.2fms", ms)
	case ms < 1000:
		return fmt.Sprintf("%.1fms", ms)
	}
	return fmt.Sprintf("%.2fs", ms/1000)
}

func checkText(s adminapi.Server) string {
	lc := s.LastCheck
	if lc == nil {
		return "-"
	}
	age := time.Since(lc.At).Round(time.Second)
	if lc.OK {
		return fmt.Sprintf("ok %s ago", age)
	}
	return fmt.Sprintf("failed %s ago: %s", age, lc.Error)
}

func weightText(s adminapi.Server) string {
	if s.EffectiveWeight > 0 && s.EffectiveWeight < float64(s.Weight) {
		return fmt.Sprintf("%.1f/%d", s.EffectiveWeight, s.Weight)
	}
	return strconv.Itoa(s.Weight)
}

func (c *ctl) servers(args []string) error {
	bs, err := c.getBackends()
	if err != nil {
		return err
	}
	ss := []adminapi.Server{}
	found := len(args) == 0
	for _, b := range bs {
		if len(args) == 1 && b.Name != args[0] {
			continue
		}
		found = true
		ss = append(ss, b.Servers...)
	}
	if !found {
		return fmt.Errorf("unknown backend %q", args[0])
	}
	if c.json {
		return c.printJSON(map[string]any{"servers": ss})
	}
	tw := newTable(c.out, "BACKEND", "SERVER", "ADDRESS", "STATE", "HEALTH", "WEIGHT", "IN FLIGHT", "REQUESTS", "5XX", "LATENCY", "LAST CHECK")
	for _, s := range ss {
		name := s.Name
		if s.Backup {
			name += " (backup)"
		}
		row(tw, s.Backend, name, s.Address, s.State, healthText(s), weightText(s), s.InFlight, s.Requests, s.Responses.C5xx, msText(s.LatencyMs), checkText(s))
	}
	return tw.Flush()
}

func (c *ctl) backends() error {
	if c.json {
		var raw json.RawMessage
		if err := c.call(http.MethodGet, "/api/backends", nil, &raw); err != nil {
			return err
		}
		return c.printJSON(raw)
	}
	bs, err := c.getBackends()
	if err != nil {
		return err
	}
	tw := newTable(c.out, "BACKEND", "MODE", "ALGORITHM", "SERVERS", "UP", "USABLE", "IN FLIGHT", "REQUESTS", "5XX")
	for _, b := range bs {
		ss := b.Servers
		var up, usable int
		var inflight int64
		var requests, e5 uint64
		for _, s := range ss {
			if s.Health == "up" && !s.Ejected {
				up++
			}
			if s.Usable {
				usable++
			}
			inflight += s.InFlight
			requests += s.Requests
			e5 += s.Responses.C5xx
		}
		mode := b.Mode
		if mode == "" {
			mode = "-"
		}
		row(tw, b.Name, mode, b.Algorithm, len(ss), up, usable, inflight, requests, e5)
	}
	return tw.Flush()
}

func (c *ctl) frontends() error {
	var raw json.RawMessage
	if err := c.call(http.MethodGet, "/api/frontends", nil, &raw); err != nil {
		return err
	}
	if c.json {
		return c.printJSON(raw)
	}
	var out adminapi.Frontends
	if err := json.Unmarshal(raw, &out); err != nil {
		return err
	}
	tw := newTable(c.out, "FRONTEND", "MODE", "ADDRESSES", "ACTIVE", "CONNECTIONS", "REQUESTS", "5XX", "BYTES IN", "BYTES OUT")
	for _, f := range out.Frontends {
		e5 := "-"
		if f.Responses != nil {
			e5 = strconv.FormatUint(f.Responses.C5xx, 10)
		}
		addrs := strings.Join(f.Addresses, ",")
		if addrs == "" {
			addrs = "-"
		}
		row(tw, f.Name, f.Mode, addrs, f.ActiveConnections, f.Connections, f.Requests, e5, f.BytesIn, f.BytesOut)
	}
	return tw.Flush()
}

func (c *ctl) serverChange(method, b, s, action string, body any) error {
	var raw json.RawMessage
	path := "/api/backends/" + url.PathEscape(b) + "/servers/" + url.PathEscape(s) + "/" + action
	if err := c.call(method, path, body, &raw); err != nil {
		return err
	}
	if c.json {
		return c.printJSON(raw)
	}
	var srv adminapi.Server
	if err := json.Unmarshal(raw, &srv); err != nil {
		return err
	}
	fmt.Fprintf(c.out, "%s/%s: state %s, weight %s, health %s, %d in flight\n", srv.Backend, srv.Name, srv.State, weightText(srv), healthText(srv), srv.InFlight)
	return nil
}

func (c *ctl) events() error {
	var raw json.RawMessage
	if err := c.call(http.MethodGet, "/api/events", nil, &raw); err != nil {
		return err
	}
	if c.json {
		return c.printJSON(raw)
	}
	var out adminapi.Events
	if err := json.Unmarshal(raw, &out); err != nil {
		return err
	}
	tw := newTable(c.out, "TIME", "SERVER", "EVENT", "BY", "DETAIL")
	for _, e := range out.Events {
		who := "-"
		if e.Server != "" {
			who = e.Backend + "/" + e.Server
		}
		what := e.Kind
		if e.From != "" || e.To != "" {
			what = fmt.Sprintf("%s %s -> %s", e.Kind, e.From, e.To)
		}
		detail := e.Detail
		if detail == "" {
			detail = "-"
		}
		row(tw, e.Time.Local().Format("2006-01-02 15:04:05"), who, what, e.Source, detail)
	}
	return tw.Flush()
}

// untilText says how long a block lasts: until a local time, with the time left, or until lifted.
func untilText(e adminapi.DenyEntry) (until, left string) {
	if e.Expires == nil {
		return "lifted", "-"
	}
	until = e.Expires.Local().Format("2006-01-02 15:04:05")
	left = "-"
	if e.RemainingSeconds != nil {
		left = (time.Duration(*e.RemainingSeconds) * time.Second).String()
	}
	return until, left
}

func (c *ctl) deny(cidr string) error {
	body := map[string]string{"cidr": cidr}
	if c.ttl > 0 {
		body["ttl"] = c.ttl.String()
	}
	var raw json.RawMessage
	if err := c.call(http.MethodPost, "/api/deny", body, &raw); err != nil {
		return err
	}
	if c.json {
		return c.printJSON(raw)
	}
	var e adminapi.DenyEntry
	if err := json.Unmarshal(raw, &e); err != nil {
		return err
	}
	if e.Expires == nil {
		fmt.Fprintf(c.out, "denied %s until lifted\n", e.CIDR)
		return nil
	}
	until, left := untilText(e)
	fmt.Fprintf(c.out, "denied %s until %s (%s)\n", e.CIDR, until, left)
	return nil
}

func (c *ctl) undeny(cidr string) error {
	var raw json.RawMessage
	if err := c.call(http.MethodDelete, "/api/deny?cidr="+url.QueryEscape(cidr), nil, &raw); err != nil {
		return err
	}
	if c.json {
		return c.printJSON(raw)
	}
	var out adminapi.Lifted
	if err := json.Unmarshal(raw, &out); err != nil {
		return err
	}
	fmt.Fprintf(c.out, "lifted the block of %s\n", out.CIDR)
	return nil
}

func (c *ctl) denied() error {
	var raw json.RawMessage
	if err := c.call(http.MethodGet, "/api/deny", nil, &raw); err != nil {
		return err
	}
	if c.json {
		return c.printJSON(raw)
	}
	var out adminapi.Denied
	if err := json.Unmarshal(raw, &out); err != nil {
		return err
	}
	if len(out.Denied) == 0 {
		fmt.Fprintln(c.out, "no sources are denied")
		return nil
	}
	tw := newTable(c.out, "CIDR", "UNTIL", "REMAINING")
	for _, e := range out.Denied {
		until, left := untilText(e)
		row(tw, e.CIDR, until, left)
	}
	return tw.Flush()
}

// rateText formats a rate per second for a table.
func rateText(v float64) string {
	if v >= 100 {
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
	return strconv.FormatFloat(v, 'f', 1, 64)
}

func (c *ctl) topSources() error {
	var raw json.RawMessage
	if err := c.call(http.MethodGet, "/api/top-sources?limit="+strconv.Itoa(c.top), nil, &raw); err != nil {
		return err
	}
	if c.json {
		return c.printJSON(raw)
	}
	var out adminapi.TopSources
	if err := json.Unmarshal(raw, &out); err != nil {
		return err
	}
	tw := newTable(c.out, "SOURCE", "FRONTEND", "REQ/S", "CONN/S", "OPEN", "CONNECTIONS", "REQUESTS", "REFUSED", "DENIED")
	for _, s := range out.Sources {
		denied := "-"
		if s.Denied {
			denied = "yes"
		}
		row(tw, s.Source, s.Frontend, rateText(s.RequestRate), rateText(s.ConnectionRate), s.OpenConnections, s.Connections, s.Requests, s.Refused, denied)
	}
	return tw.Flush()
}

func (c *ctl) vrrp() error {
	var raw json.RawMessage
	if err := c.call(http.MethodGet, "/api/vrrp", nil, &raw); err != nil {
		return err
	}
	if c.json {
		return c.printJSON(raw)
	}
	var out adminapi.VRRP
	if err := json.Unmarshal(raw, &out); err != nil {
		return err
	}
	if len(out.Instances) == 0 {
		fmt.Fprintln(c.out, "no VRRP instances are configured")
		return nil
	}
	tw := newTable(c.out, "INSTANCE", "INTERFACE", "VRID", "STATE", "PRIORITY", "MASTER", "TRACKERS", "TRANSITIONS", "LAST CHANGE")
	var errs []string
	for _, in := range out.Instances {
		prio := strconv.Itoa(in.Priority)
		if in.EffectivePriority != in.Priority {
			prio = fmt.Sprintf("%d/%d", in.EffectivePriority, in.Priority)
		}
		master := "-"
		if in.MasterAddress != nil {
			master = *in.MasterAddress
		}
		var trackers []string
		for _, tr := range in.Trackers {
			verdict := "ok"
			if tr.Failing {
				verdict = "failing"
			}
			trackers = append(trackers, tr.Name+"="+verdict)
		}
		tracked := strings.Join(trackers, ",")
		if tracked == "" {
			tracked = "-"
		}
		last := "-"
		if in.LastTransition != nil {
			last = time.Since(*in.LastTransition).Round(time.Second).String() + " ago"
			if in.LastReason != "" {
				last += ": " + in.LastReason
			}
		}
		row(tw, in.Name, in.Interface, in.VirtualRouterID, in.State, prio, master, tracked, in.Transitions, last)
		if in.LastError != "" {
			errs = append(errs, in.Name+": last error: "+in.LastError)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, e := range errs {
		fmt.Fprintln(c.out, e)
	}
	return nil
}

// parseInterspersed parses fs's flags before, between and after the positional arguments and
// returns those; with none (or on -h or a flag error, after the usage was printed) it returns nil
// and the exit status.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, int) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, 0
			}
			return nil, 2
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(pos) == 0 {
		fs.Usage()
		return nil, 2
	}
	return pos, 0
}

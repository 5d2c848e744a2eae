package admin

import (
	"runtime"
	"slices"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/waage/waage/internal/backend"
	"github.com/waage/waage/internal/guard"
	"github.com/waage/waage/internal/h2srv"
	"github.com/waage/waage/internal/vrrp"
)

// collector turns the data path's atomics into Prometheus samples when /metrics is scraped. The
// data path never touches a client_golang type: it adds to atomics in backend.Server and the
// frontends' stats (and to lock-free fixed-bucket histograms), and this collector reads them with
// MustNewConstMetric and MustNewConstHistogram. A request therefore costs no lock, no map lookup
// and no label hashing for metrics.
type collector struct {
	src     Source
	version string
}

func newCollector(src Source, version string) *collector {
	if version == "" {
		version = "dev"
	}
	return &collector{src: src, version: version}
}

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc("waage_"+name, help, labels, nil)
}

var (
	descBuildInfo = desc("build_info", "Always 1; the labels name the running build.", "version", "goversion")

	feLabels         = []string{"frontend"}
	descFeActive     = desc("frontend_active_connections", "Open client connections (open flows for udp frontends).", feLabels...)
	descFeConns      = desc("frontend_connections_total", "Client connections accepted (flows opened for udp frontends).", feLabels...)
	descFeRequests   = desc("frontend_requests_total", "Requests answered (http), connections proxied (tcp) or datagrams received from clients (udp).", feLabels...)
	descFeResponses  = desc("frontend_responses_total", "Responses sent to clients by status class (http frontends).", "frontend", "code")
	descFeBytesIn    = desc("frontend_bytes_in_total", "Bytes from clients to servers: request bodies (http) or all payload (tcp, udp; tcp counted when the connection ends).", feLabels...)
	descFeBytesOut   = desc("frontend_bytes_out_total", "Bytes from servers to clients: response bodies (http) or all payload (tcp, udp; tcp counted when the connection ends).", feLabels...)
	descFeDuration   = desc("frontend_request_duration_seconds", "Request duration from the request head to the last response byte (http frontends).", feLabels...)
	descFeRefused    = desc("frontend_refused_total", "Connections, requests and datagrams the frontend's protection refused, by reason: deny (access lists and the live deny list), conn_limit, conn_rate, rate, header_timeout, body_timeout, too_large, packet_rate, flow_limit, h2_abuse.", "frontend", "reason")
	descDenied       = desc("denied_sources", "Prefixes on the live deny list (POST /api/deny) now.")
	beLabels         = []string{"backend"}
	descBeServers    = desc("backend_servers", "Servers of the backend.", beLabels...)
	descBeUsable     = desc("backend_servers_usable", "Servers of the backend that take new traffic now: healthy, not ejected, ready, weight above 0.", beLabels...)
	descBeActive     = desc("backend_active_connections", "Requests and L4 connections in progress on the backend's servers.", beLabels...)
	descBeRequests   = desc("backend_requests_total", "Requests and L4 connections sent to the backend's servers (each attempt counts).", beLabels...)
	descBeResponses  = desc("backend_responses_total", "Responses clients got from the backend's servers by status class, including waage's 502 and 504 answers for a failed server.", "backend", "code")
	descBeBytesIn    = desc("backend_bytes_in_total", "Bytes sent to the backend's servers: request bodies (http) or all payload (L4).", beLabels...)
	descBeBytesOut   = desc("backend_bytes_out_total", "Bytes received from the backend's servers: response bodies (http) or all payload (L4).", beLabels...)
	descBeConnErrs   = desc("backend_connect_errors_total", "Failed connects to the backend's servers.", beLabels...)
	descBeRetries    = desc("backend_retries_total", "Attempts that retried a failed request or connection on the backend.", beLabels...)
	descBeFailures   = desc("backend_failures_total", "Failed attempts on the backend's servers: connect errors, resets, timeouts, invalid responses.", beLabels...)
	descBeDuration   = desc("backend_request_duration_seconds", "Duration of the HTTP requests the backend's servers handled, from the request head to the last response byte.", beLabels...)
	srvLabels        = []string{"backend", "server"}
	descSrvUp        = desc("server_up", "1 while active health checks find the server healthy (also without checks), 0 while it is DOWN.", srvLabels...)
	descSrvEjected   = desc("server_ejected", "1 while outlier detection has ejected the server.", srvLabels...)
	descSrvUsable    = desc("server_usable", "1 while the server takes new traffic: healthy, not ejected, ready, weight above 0.", srvLabels...)
	descSrvState     = desc("server_state", "Administrative state: 1 for the current one of ready, drain and maintenance.", "backend", "server", "state")
	descSrvWeight    = desc("server_weight", "Configured or operator-set weight.", srvLabels...)
	descSrvActive    = desc("server_active_connections", "Requests and L4 connections in progress on the server.", srvLabels...)
	descSrvRequests  = desc("server_requests_total", "Requests and L4 connections sent to the server (each attempt counts).", srvLabels...)
	descSrvResponses = desc("server_responses_total", "Responses clients got from the server by status class, including waage's 502 and 504 answers when it failed.", "backend", "server", "code")
	descSrvBytesIn   = desc("server_bytes_in_total", "Bytes sent to the server: request bodies (http) or all payload (L4).", srvLabels...)
	descSrvBytesOut  = desc("server_bytes_out_total", "Bytes received from the server: response bodies (http) or all payload (L4).", srvLabels...)
	descSrvConnErrs  = desc("server_connect_errors_total", "Failed connects to the server.", srvLabels...)
	descSrvRetries   = desc("server_retries_total", "Attempts the server received as a retry of a failed one.", srvLabels...)
	descSrvFailures  = desc("server_failures_total", "Failed attempts on the server: connect errors, resets, timeouts, invalid responses.", srvLabels...)
	descSrvLatency   = desc("server_latency_seconds", "Moving average of the time to the response head (http) or to connect (L4), as least_response_time uses it.", srvLabels...)
	descSrvDuration  = desc("server_request_duration_seconds", "Duration of the HTTP requests the server handled, from the request head to the last response byte.", srvLabels...)
	descSrvChecks    = desc("server_health_checks_total", "Active health checks run against the server.", srvLabels...)
	descSrvCheckOK   = desc("server_health_check_success", "1 when the latest active health check passed, 0 when it failed (absent before the first).", srvLabels...)
	descSrvCheckDur  = desc("server_health_check_duration_seconds", "How long the active health checks took.", srvLabels...)
	descH2Streams    = desc("http2_streams_total", "Requests that arrived on HTTP/2 client connections (streams handed to the router), all frontends together.")
	descH2Events     = desc("http2_events_total", "What the HTTP/2 server's limits and checks cut, all frontends together, by event: refused_stream, stream_error, conn_error, reset_flood, header_flood, header_too_large, empty_flood, control_flood, ping_timeout, idle_close, write_timeout, header_timeout.", "event")
	// Not "instance": Prometheus gives every scraped series an instance label of its own (the
	// target), and would rename this one to exported_instance.
	vrrpLabels       = []string{"vrrp_instance"}
	descVRRPState    = desc("vrrp_state", "1 for the VRRP instance's current state, 0 for the others: initialize, backup, master, fault.", "vrrp_instance", "state")
	descVRRPPriority = desc("vrrp_priority", "The priority the VRRP instance advertises: the configured one less the weights of its failing trackers.", vrrpLabels...)
	descVRRPTrans    = desc("vrrp_transitions_total", "State changes of the VRRP instance since it started.", vrrpLabels...)
)

// vrrpStates are the states waage_vrrp_state has a sample for.
var vrrpStates = []string{vrrp.Initialize.String(), vrrp.Backup.String(), vrrp.Master.String(), vrrp.Fault.String()}

var statusClasses = [6]string{"", "1xx", "2xx", "3xx", "4xx", "5xx"}

// Describe sends no descriptors: the collector is unchecked, since which metrics exist depends on
// the running configuration.
func (c *collector) Describe(chan<- *prometheus.Desc) {}

// Collect reads every counter once.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(descBuildInfo, prometheus.GaugeValue, 1, c.version, runtime.Version())
	for _, f := range c.src.Frontends() {
		st := &f.Stats
		counter := func(d *prometheus.Desc, v uint64, labels ...string) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), append([]string{f.Name}, labels...)...)
		}
		ch <- prometheus.MustNewConstMetric(descFeActive, prometheus.GaugeValue, float64(st.ActiveConnections), f.Name)
		counter(descFeConns, st.Connections)
		counter(descFeRequests, st.Requests)
		counter(descFeBytesIn, st.BytesIn)
		counter(descFeBytesOut, st.BytesOut)
		if f.Mode == "http" {
			for i := 1; i <= 5; i++ {
				counter(descFeResponses, st.Responses[i], statusClasses[i])
			}
		}
		if st.Duration != nil {
			ch <- histogram(descFeDuration, *st.Duration, f.Name)
		}
	}
	c.collectProtection(ch)
	if hs, ok := c.src.(H2StatsSource); ok {
		collectH2(ch, hs.H2Stats())
	}
	c.collectVRRP(ch)
	c.collectCluster(ch)
	seen := map[backend.Key]bool{}
	for _, b := range c.src.Backends() {
		var (
			usable, active                                         float64
			requests, bytesIn, bytesOut, connErrs, retries, failed uint64
			resp                                                   [6]uint64
			dur                                                    backend.HistogramSnapshot
		)
		for _, s := range b.Servers {
			if seen[s.Key] {
				continue
			}
			seen[s.Key] = true
			c.collectServer(ch, s)
			if s.Usable() {
				usable++
			}
			active += float64(s.InFlight())
			requests += s.Requests.Load()
			bytesIn += s.BytesIn.Load()
			bytesOut += s.BytesOut.Load()
			connErrs += s.ConnectErrors.Load()
			retries += s.Retries.Load()
			failed += s.Failures.Load()
			for i := range resp {
				resp[i] += s.Responses[i].Load()
			}
			dur.Add(s.Duration.Snapshot())
		}
		counter := func(d *prometheus.Desc, v uint64, labels ...string) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), append([]string{b.Name}, labels...)...)
		}
		ch <- prometheus.MustNewConstMetric(descBeServers, prometheus.GaugeValue, float64(len(b.Servers)), b.Name)
		ch <- prometheus.MustNewConstMetric(descBeUsable, prometheus.GaugeValue, usable, b.Name)
		ch <- prometheus.MustNewConstMetric(descBeActive, prometheus.GaugeValue, active, b.Name)
		counter(descBeRequests, requests)
		counter(descBeBytesIn, bytesIn)
		counter(descBeBytesOut, bytesOut)
		counter(descBeConnErrs, connErrs)
		counter(descBeRetries, retries)
		counter(descBeFailures, failed)
		for i := 1; i <= 5; i++ {
			counter(descBeResponses, resp[i], statusClasses[i])
		}
		ch <- histogram(descBeDuration, dur, b.Name)
	}
}

func (c *collector) collectServer(ch chan<- prometheus.Metric, s *backend.Server) {
	l := []string{s.Backend, s.Name}
	gauge := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, l...)
	}
	counter := func(d *prometheus.Desc, v uint64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), l...)
	}
	gauge(descSrvUp, b2f(s.Healthy()))
	gauge(descSrvEjected, b2f(s.Ejected()))
	gauge(descSrvUsable, b2f(s.Usable()))
	cur := s.State()
	for _, st := range []backend.State{backend.Ready, backend.Drain, backend.Maintenance} {
		ch <- prometheus.MustNewConstMetric(descSrvState, prometheus.GaugeValue, b2f(st == cur), s.Backend, s.Name, st.String())
	}
	gauge(descSrvWeight, float64(s.Weight()))
	gauge(descSrvActive, float64(s.InFlight()))
	gauge(descSrvLatency, s.Latency().Seconds())
	counter(descSrvRequests, s.Requests.Load())
	for i := 1; i <= 5; i++ {
		ch <- prometheus.MustNewConstMetric(descSrvResponses, prometheus.CounterValue, float64(s.Responses[i].Load()), s.Backend, s.Name, statusClasses[i])
	}
	counter(descSrvBytesIn, s.BytesIn.Load())
	counter(descSrvBytesOut, s.BytesOut.Load())
	counter(descSrvConnErrs, s.ConnectErrors.Load())
	counter(descSrvRetries, s.Retries.Load())
	counter(descSrvFailures, s.Failures.Load())
	counter(descSrvChecks, s.Checks.Load())
	if r := s.LastCheck(); r != nil {
		gauge(descSrvCheckOK, b2f(r.Err == ""))
	}
	ch <- histogram(descSrvDuration, s.Duration.Snapshot(), l...)
	ch <- histogram(descSrvCheckDur, s.CheckDuration.Snapshot(), l...)
}

// collectProtection reads every frontend's refusal counters (each reason, zero included, so that
// rate() has a series from the first scrape) and the size of the live deny list.
func (c *collector) collectProtection(ch chan<- prometheus.Metric) {
	guards := c.src.Guards()
	names := make([]string, 0, len(guards))
	for name := range guards {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		g := guards[name]
		for _, r := range guard.Reasons() {
			ch <- prometheus.MustNewConstMetric(descFeRefused, prometheus.CounterValue, float64(g.Refused[r].Load()), name, r.String())
		}
	}
	ch <- prometheus.MustNewConstMetric(descDenied, prometheus.GaugeValue, float64(len(c.src.Denied())))
}

// H2StatsSource is a Source that also has the HTTP/2 server's counters (waage_http2_*).
type H2StatsSource interface {
	H2Stats() *h2srv.Stats
}

// collectH2 reads the HTTP/2 server's counters; every event has a series, zeros included.
func collectH2(ch chan<- prometheus.Metric, st *h2srv.Stats) {
	ch <- prometheus.MustNewConstMetric(descH2Streams, prometheus.CounterValue, float64(st.Streams.Load()))
	for _, e := range []struct {
		name string
		v    *atomic.Uint64
	}{
		{"refused_stream", &st.RefusedStreams}, {"stream_error", &st.StreamErrors},
		{"conn_error", &st.ConnErrors}, {"reset_flood", &st.ResetFloods},
		{"header_flood", &st.HeaderFloods}, {"header_too_large", &st.HeadersTooBig},
		{"empty_flood", &st.EmptyFloods}, {"control_flood", &st.ControlFloods},
		{"ping_timeout", &st.PingTimeouts}, {"idle_close", &st.IdleCloses},
		{"write_timeout", &st.WriteTimeouts}, {"header_timeout", &st.HeaderTimeouts},
	} {
		ch <- prometheus.MustNewConstMetric(descH2Events, prometheus.CounterValue, float64(e.v.Load()), e.name)
	}
}

// collectVRRP reads every VRRP instance's state, effective priority and transitions.
func (c *collector) collectVRRP(ch chan<- prometheus.Metric) {
	for _, st := range c.src.VRRPStatus() {
		for _, state := range vrrpStates {
			ch <- prometheus.MustNewConstMetric(descVRRPState, prometheus.GaugeValue, b2f(st.State == state), st.Name, state)
		}
		ch <- prometheus.MustNewConstMetric(descVRRPPriority, prometheus.GaugeValue, float64(st.EffectivePriority), st.Name)
		ch <- prometheus.MustNewConstMetric(descVRRPTrans, prometheus.CounterValue, float64(st.Transitions), st.Name)
	}
}

func histogram(d *prometheus.Desc, h backend.HistogramSnapshot, labels ...string) prometheus.Metric {
	buckets := make(map[float64]uint64, len(h.Buckets))
	for i, ub := range backend.DurationBuckets {
		buckets[ub] = h.Buckets[i]
	}
	return prometheus.MustNewConstHistogram(d, h.Count, h.Sum, buckets, labels...)
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

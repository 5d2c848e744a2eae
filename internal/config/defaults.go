package config

import (
	"strconv"
	"strings"
	"time"
)

// The documented defaults. They are filled in by ApplyDefaults rather than read through accessors so
// that the admin API and `waage validate` can show the effective configuration as it runs.
const (
	defaultLogLevel        = "info"
	defaultLogFormat       = "text"
	defaultAccess          = "stdout"
	defaultAccessFormat    = "combined"
	defaultMode            = "http"
	defaultClientHeader    = 10 * time.Second
	defaultClientIdle      = 60 * time.Second
	defaultTunnel          = time.Hour
	defaultAlgorithm       = "round_robin"
	defaultHashKey         = "uri"
	defaultMaglevTableSize = 65537
	defaultWeight          = 1
	defaultState           = "ready"
	defaultConnectTimeout  = 5 * time.Second
	defaultResponseTimeout = 60 * time.Second
	defaultPoolMaxIdle     = 256
	defaultShutdownTimeout = 30 * time.Second
	defaultPoolIdleTimeout = 30 * time.Second
)

// ApplyDefaults fills every field the file left empty with its documented default, and normalises
// match hosts to lower case (Host and SNI compare case-insensitively). Load and Parse call it after
// validation succeeds; code that builds a Config itself (the Kubernetes provider) calls it too, so
// downstream packages never need to know a default. It is idempotent.
//
// The defaults: log level info, format text, access stdout, access_format combined; frontend mode
// http, timeouts client_header 10s (or limits.header_timeout, its other name), client_idle 60s
// and tunnel 1h; limits.request_rate per 1s and burst = rate; route name "route<index>"; backend algorithm
// round_robin, hash_key uri when the algorithm is hash or maglev, maglev_table_size 65537 for maglev, timeouts connect 5s and response 60s, pool
// max_idle 256 (also for 0; -1 stays and disables pooling) and idle_timeout 30s; health_check type
// tcp, interval 2s, timeout 1s, rise 2, fall 3, initial up (http: method GET, path /, expect_status
// 200-399); outlier_detection consecutive_failures 5, base_ejection_time 30s, max_ejection_time
// 5m, max_ejection_percent 50; retry attempts 3, budget percent 20 and min_per_second 10; server
// name = its address, weight 1, state ready. A server's health_check override is not defaulted
// here: Backend.HealthCheckFor merges and defaults it.
func (c *Config) ApplyDefaults() {
	orDefault(&c.Log.Level, defaultLogLevel)
	orDefault(&c.Log.Format, defaultLogFormat)
	orDefault(&c.Log.Access, defaultAccess)
	orDefault(&c.Log.AccessFormat, defaultAccessFormat)
	for i := range c.Frontends {
		f := &c.Frontends[i]
		orDefault(&f.Mode, defaultMode)
		// limits.header_timeout and timeouts.client_header are one setting under two names.
		orDefault(&f.Timeouts.ClientHeader, f.Limits.HeaderTimeout)
		orDefault(&f.Timeouts.ClientHeader, Duration(defaultClientHeader))
		f.Limits.RequestRate.applyDefaults()
		orDefault(&f.Timeouts.ClientIdle, Duration(defaultClientIdle))
		orDefault(&f.Timeouts.Tunnel, Duration(defaultTunnel))
		f.applyL4Defaults()
		for j := range f.Routes {
			r := &f.Routes[j]
			orDefault(&r.Name, defaultRouteName(j))
			if r.Limits != nil {
				r.Limits.RequestRate.applyDefaults()
			}
			for k, h := range r.Match.Host {
				r.Match.Host[k] = strings.ToLower(h)
			}
		}
	}
	for i := range c.VRRP {
		c.VRRP[i].ApplyDefaults()
	}
	if c.BGP != nil {
		c.BGP.ApplyDefaults()
	}
	orDefault(&c.ShutdownTimeout, Duration(defaultShutdownTimeout))
	for i := range c.Backends {
		b := &c.Backends[i]
		orDefault(&b.Algorithm, defaultAlgorithm)
		if b.Algorithm == "hash" || b.Algorithm == "maglev" {
			orDefault(&b.HashKey, defaultHashKey)
		}
		if b.Algorithm == "maglev" {
			orDefault(&b.MaglevTableSize, defaultMaglevTableSize)
		}
		orDefault(&b.Timeouts.Connect, Duration(defaultConnectTimeout))
		orDefault(&b.Timeouts.Response, Duration(defaultResponseTimeout))
		orDefault(&b.Pool.MaxIdle, defaultPoolMaxIdle)
		orDefault(&b.Pool.IdleTimeout, Duration(defaultPoolIdleTimeout))
		if b.HealthCheck != nil {
			b.HealthCheck.applyDefaults()
		}
		b.OutlierDetection.applyDefaults()
		b.Retry.applyDefaults()
		b.applyL4Defaults()
		for k := range b.Servers {
			s := &b.Servers[k]
			orDefault(&s.Name, s.Address)
			orDefault(&s.State, defaultState)
			if s.Weight == nil {
				w := defaultWeight
				s.Weight = &w
			}
		}
	}
}

// orDefault sets *p to def if *p is the zero value.
func orDefault[T comparable](p *T, def T) {
	var zero T
	if *p == zero {
		*p = def
	}
}

// defaultRouteName is the name of the unnamed route at index j, so that metrics and logs can still
// tell routes apart.
func defaultRouteName(j int) string { return "route" + strconv.Itoa(j) }

package config

import (
	"testing"
	"time"
)

func TestParseByteSize(t *testing.T) {
	for in, want := range map[string]ByteSize{
		"0": 0, "32768": 32768, "32KB": 32 << 10, "32kb": 32 << 10, "32 KB": 32 << 10, "1k": 1024,
		"100MB": 100 << 20, "1GiB": 1 << 30, "2MiB": 2 << 20, "7B": 7, "1G": 1 << 30,
	} {
		if got, err := ParseByteSize(in); err != nil || got != want {
			t.Errorf("ParseByteSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "KB", "-1", "1.5MB", "10XB", "99999999999GB", "0x10"} {
		if got, err := ParseByteSize(in); err == nil {
			t.Errorf("ParseByteSize(%q) = %d, want an error", in, got)
		}
	}
}

func TestRequestRateDefaultsAndRetryAfter(t *testing.T) {
	cfg := mustParse(t, backendB+"frontends:\n  - name: a\n    listen: [\":0\"]\n    default_backend: b\n    limits: {request_rate: {rate: 10}, header_timeout: 3s}\n    routes:\n      - {backend: b, limits: {request_rate: {rate: 1, per: 1m, burst: 5}}}\n")
	f := cfg.Frontends[0]
	if r := f.Limits.RequestRate; r.Per.D() != time.Second || r.Burst != 10 || r.RetryAfter() != 1 {
		t.Errorf("frontend request_rate = %+v, retry after %d", *r, r.RetryAfter())
	}
	if r := f.Routes[0].Limits.RequestRate; r.Burst != 5 || r.RetryAfter() != 60 {
		t.Errorf("route request_rate = %+v, retry after %d", *r, r.RetryAfter())
	}
	if f.Timeouts.ClientHeader.D() != 3*time.Second {
		t.Errorf("limits.header_timeout did not become timeouts.client_header: %v", f.Timeouts.ClientHeader)
	}
}

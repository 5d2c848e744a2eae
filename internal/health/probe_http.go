package health

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/waage/waage/internal/config"
	"github.com/waage/waage/internal/tlsx"
)

// httpProber sends one HTTP/1.1 request per check and judges the status and, when configured,
// the body.
type httpProber struct {
	client  *http.Client
	scheme  string
	method  string
	path    *url.URL // path and query only
	host    string   // Host header; empty for the target address
	headers config.StringMap
	status  []statusRange
	expect  string // the accepted statuses as written, for messages
	body    *matcher
}

// statusRange is one expect_status entry, a single status having lo == hi.
type statusRange struct{ lo, hi int }

func newHTTPProber(hc *config.HealthCheck) (*httpProber, error) {
	p := &httpProber{scheme: "http", method: hc.Method, host: hc.Host, headers: hc.Headers}
	version := proxyVersion(hc)
	if p.method == "" {
		p.method = http.MethodGet
	}
	path := hc.Path
	if path == "" {
		path = "/"
	}
	u, err := url.ParseRequestURI(path)
	if err != nil || u.Scheme != "" || u.Host != "" {
		return nil, fmt.Errorf("path: invalid request path %q", path)
	}
	p.path = u

	statuses := []string(hc.ExpectStatus)
	if len(statuses) == 0 {
		statuses = []string{"200-399"}
	}
	written := make([]string, len(statuses))
	for i, s := range statuses {
		lo, hi, err := config.ParseStatusRange(s)
		if err != nil {
			return nil, fmt.Errorf("expect_status: %v", err)
		}
		p.status = append(p.status, statusRange{lo, hi})
		written[i] = strings.TrimSpace(s)
	}
	p.expect = strings.Join(written, ", ")

	if p.body, err = newMatcher("expect_body", hc.ExpectBody); err != nil {
		return nil, err
	}

	// A transport of its own, so that checks share no connections, proxy settings or TLS
	// configuration with waage's traffic. Without keep-alives each check opens a fresh
	// connection, as HAProxy's do: a check then proves that the server still accepts
	// connections, not merely that an old one still works.
	tr := &http.Transport{
		Proxy: nil,
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			return dialCheck(ctx, addr, version)
		},
		DisableKeepAlives:      true,
		DisableCompression:     true,
		MaxResponseHeaderBytes: maxRead,
		// An empty map keeps checks on HTTP/1.1 even over TLS.
		TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{},
	}
	if hc.TLS != nil {
		if tr.TLSClientConfig, err = tlsx.ClientConfig(hc.TLS); err != nil {
			return nil, err
		}
		p.scheme = "https"
	}
	p.client = &http.Client{
		Transport: tr,
		// A redirect is an answer to judge by its status, not a reason to check another server.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return p, nil
}

// Probe sends the request and judges the response.
func (p *httpProber) Probe(ctx context.Context, t Target) error {
	u := *p.path
	u.Scheme, u.Host = p.scheme, t.Address
	req, err := http.NewRequestWithContext(ctx, p.method, u.String(), nil)
	if err != nil {
		return fmt.Errorf("request: %v", err)
	}
	// net/http writes the Host header from req.Host only; host, the dedicated field, wins over
	// a Host entry among the headers.
	for _, kv := range p.headers {
		if strings.EqualFold(kv.Key, "Host") {
			req.Host = kv.Value
			continue
		}
		req.Header.Add(kv.Key, kv.Value)
	}
	if p.host != "" {
		req.Host = p.host
	}
	if _, ok := req.Header["User-Agent"]; !ok {
		req.Header.Set("User-Agent", "waage-health-check")
	}

	resp, err := p.client.Do(req)
	if err != nil {
		return p.requestError(ctx, err)
	}
	defer func() { _ = resp.Body.Close() }()

	if !p.statusOK(resp.StatusCode) {
		return fmt.Errorf("status %d (expected %s)", resp.StatusCode, p.expect)
	}
	if p.body == nil {
		return nil
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxRead))
	if err != nil && !p.body.match(body) {
		if errors.Is(ctx.Err(), context.Canceled) {
			return errCanceled
		}
		return errors.New("body: " + describe(err))
	}
	if !p.body.match(body) {
		return p.body.failure("body")
	}
	return nil
}

func (p *httpProber) statusOK(code int) bool {
	for _, r := range p.status {
		if r.lo <= code && code <= r.hi {
			return true
		}
	}
	return false
}

// requestError shortens the error of a failed request to its cause.
func (p *httpProber) requestError(ctx context.Context, err error) error {
	if errors.Is(ctx.Err(), context.Canceled) {
		return errCanceled
	}
	var cve *tls.CertificateVerificationError
	if errors.As(err, &cve) {
		return errors.New("tls handshake: " + cve.Err.Error())
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Op == "dial" {
		return errors.New(describe(oe))
	}
	if isTimeout(err) || errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return errors.New("timeout")
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return errors.New("connection closed before response")
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return errors.New(strings.TrimPrefix(describe(err), "net/http: "))
}

package l7

import (
	"bytes"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/waage/waage/internal/config"
)

// pathMod replaces a request's path, as the Gateway API's HTTPPathModifier does: the whole path,
// or the route's path_prefix (ReplacePrefixMatch).
type pathMod struct {
	kind uint8 // modNone, modFull or modPrefix
	// full is the whole new path (modFull).
	full string
	// prefix is the route's path_prefix and with its replacement, both without a trailing
	// slash ("" for "/"), so that /foo, /foo/ and /foo/bar all lose /foo (modPrefix).
	prefix, with string
}

const (
	modNone uint8 = iota
	modFull
	modPrefix
)

func compilePathMod(full, replacePrefix, pathPrefix string) pathMod {
	switch {
	case full != "":
		return pathMod{kind: modFull, full: full}
	case replacePrefix != "":
		return pathMod{kind: modPrefix, prefix: strings.TrimSuffix(pathPrefix, "/"), with: strings.TrimSuffix(replacePrefix, "/")}
	}
	return pathMod{}
}

// modify returns the new path in two parts, head from the config and rest from path; written
// one after the other they are the path to send, never empty. The prefix is compared whole
// segment by segment, as the Gateway API's PathPrefix matches: /foo/bar loses /foo, /foobar
// does not and stays as it is, and what is left of /foo or /foo/ under a replacement "/" is "/".
// A path that is not one ("*") stays as it is too.
func (m *pathMod) modify(path []byte) (head string, rest []byte) {
	if m.kind == modFull {
		return m.full, nil
	}
	if m.kind == modNone || len(path) == 0 || path[0] != '/' {
		return "", path
	}
	p := m.prefix
	if len(path) < len(p) || string(path[:len(p)]) != p || len(path) > len(p) && path[len(p)] != '/' {
		return "", path
	}
	rest = path[len(p):]
	if m.with == "" && len(rest) == 0 {
		return "/", nil
	}
	return m.with, rest
}

// redirect is a route's compiled redirect answer.
type redirect struct {
	scheme string // "": the request's
	host   string // "": the request's; an IPv6 literal in brackets
	port   int    // 0: see appendLocation
	path   pathMod
	status int
	// head is the status line and the start of the Location field.
	head string
}

var redirectReasons = map[int]string{
	301: "Moved Permanently",
	302: "Found",
	303: "See Other",
	307: "Temporary Redirect",
	308: "Permanent Redirect",
}

func compileRedirect(rc *config.Redirect, pathPrefix string) *redirect {
	rd := &redirect{scheme: rc.Scheme, host: strings.ToLower(strings.TrimSuffix(rc.Host, ".")), port: rc.Port, status: rc.Status}
	if a, err := netip.ParseAddr(rd.host); err == nil && a.Is6() {
		rd.host = "[" + rd.host + "]"
	}
	if rd.status == 0 {
		rd.status = 302
	}
	rd.path = compilePathMod(rc.Path, rc.ReplacePrefix, pathPrefix)
	rd.head = "HTTP/1.1 " + strconv.Itoa(rd.status) + " " + redirectReasons[rd.status] + "\r\nLocation: "
	return rd
}

// appendLocation appends the redirect's target for a request to dst: scheme is the request's,
// authority its Host field as sent, host the name from it (lower case, without the port), path
// the normalised path. The port follows the Gateway API's RequestRedirect: the configured one;
// without it the default port of a configured scheme, otherwise the request's. A scheme's
// default port (80 for http, 443 for https) is left out. The query string is kept.
func (rd *redirect) appendLocation(dst []byte, scheme string, authority, host, path, query []byte, hasQuery bool) []byte {
	if rd.scheme != "" {
		scheme = rd.scheme
	}
	dst = append(dst, scheme...)
	dst = append(dst, "://"...)
	if rd.host != "" {
		dst = append(dst, rd.host...)
	} else {
		dst = append(dst, host...)
	}
	port := rd.port
	if port == 0 && rd.scheme == "" {
		port = authorityPort(authority)
	}
	if port != 0 && !(port == 80 && scheme == "http" || port == 443 && scheme == "https") {
		dst = append(dst, ':')
		dst = strconv.AppendInt(dst, int64(port), 10)
	}
	if len(path) == 0 || path[0] != '/' {
		path = []byte("/") // OPTIONS *
	}
	head, rest := rd.path.modify(path)
	dst = append(dst, head...)
	dst = append(dst, rest...)
	if hasQuery {
		dst = append(dst, '?')
		dst = append(dst, query...)
	}
	return dst
}

// authorityPort returns the port of a Host field ("a.example:8080", "[::1]:8080"); 0 without one.
func authorityPort(a []byte) int {
	i := bytes.LastIndexByte(a, ':')
	if i < 0 || bytes.IndexByte(a[i:], ']') >= 0 {
		return 0
	}
	n := 0
	for _, c := range a[i+1:] {
		if c < '0' || c > '9' || n > 65535 {
			return 0
		}
		n = n*10 + int(c-'0')
	}
	if n > 65535 {
		return 0
	}
	return n
}

// redirect answers a request on a route with a redirect: the status, Location and an empty
// body. It returns whether the connection may stay open.
func (cc *clientConn) redirect(h *Handler, ex *exchange, rd *redirect) bool {
	req := &ex.req
	if rd.host == "" && len(ex.host) == 0 {
		return cc.respondError(h, ex, 400, "redirect needs a Host", true)
	}
	w := cc.writer()
	cc.armWrite(time.Now(), h.idleTimeout())
	w.WriteString(rd.head)
	var buf [512]byte
	w.Write(rd.appendLocation(buf[:0], cc.scheme(h), req.host, ex.host, ex.path, req.query, req.query != nil))
	return cc.finishSimple(h, ex, rd.status, "", "", false)
}

// redirect answers a stream on a route with a redirect, as clientConn.redirect does.
func (f *forward) redirect(sk sink, rd *redirect) {
	host := hostname(nil, []byte(f.r.Host))
	if rd.host == "" && len(host) == 0 {
		sk.Error(f, 400, "redirect needs a Host")
		return
	}
	q := f.r.URL.RawQuery
	loc := rd.appendLocation(nil, f.scheme, []byte(f.r.Host), host, f.path, []byte(q), q != "" || f.r.URL.ForceQuery)
	hd := sk.Header()
	hd.Set("Location", string(loc))
	hd.Set("Content-Length", "0")
	sk.WriteHead(rd.status, false, false)
	sk.Finish(nil)
	sk.Done(f, rd.status, 0)
}

package l7

import (
	"bufio"
	"io"
	"net/netip"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"
)

// AccessLog writes one line per request in the combined (NCSA) or JSON format. Lines are buffered
// and flushed every 200ms or when the buffer fills, so logging costs no syscall per request.
type AccessLog struct {
	json bool
	mu   sync.Mutex
	w    *bufio.Writer
	out  io.Writer
	stop chan struct{}
	done chan struct{}
}

// NewAccessLog starts an access log writing to out; format is "combined" or "json".
func NewAccessLog(out io.Writer, format string) *AccessLog {
	l := &AccessLog{
		json: format == "json",
		w:    bufio.NewWriterSize(out, 64<<10),
		out:  out,
		stop: make(chan struct{}),
		done: make(chan struct{}),
	}
	go l.flusher()
	return l
}

func (l *AccessLog) flusher() {
	defer close(l.done)
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			l.mu.Lock()
			l.w.Flush()
			l.mu.Unlock()
			return
		case <-t.C:
			l.mu.Lock()
			l.w.Flush()
			l.mu.Unlock()
		}
	}
}

// Close flushes and stops the log. It does not close the underlying writer.
func (l *AccessLog) Close() {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	<-l.done
}

// accessEntry is one request's log record. Byte fields are copies owned by the entry.
type accessEntry struct {
	start     time.Time
	client    []byte
	method    []byte
	target    []byte
	minor     int
	h2        bool // an HTTP/2 request (minor is then unused)
	status    int
	bytes     int64
	referer   []byte
	userAgent []byte
	frontend  string
	route     string
	backend   string
	server    string
	host      []byte
	raw       bool // target is the raw request line of a request that did not parse
	duration  time.Duration
	scratch   []byte
}

func (e *accessEntry) reset() {
	e.client, e.method, e.target, e.referer, e.userAgent, e.host = nil, nil, nil, nil, nil, nil
	e.status, e.bytes, e.minor, e.raw, e.h2 = 0, 0, 1, false, false
	e.route, e.backend, e.server = "", "", ""
	e.scratch = e.scratch[:0]
}

// keep copies b into the entry's scratch space so it outlives the read buffer.
func (e *accessEntry) keep(b []byte) []byte {
	s := len(e.scratch)
	e.scratch = append(e.scratch, b...)
	return e.scratch[s:len(e.scratch):len(e.scratch)]
}

// write formats and buffers the entry.
func (l *AccessLog) write(e *accessEntry) {
	bp := smallBufs.Get().(*[]byte)
	b := (*bp)[:0]
	if l.json {
		b = e.appendJSON(b)
	} else {
		b = e.appendCombined(b)
	}
	l.writeLine(bp, b)
}

// writeLine buffers one formatted line (b, built in the pooled buffer bp) and gives bp back.
func (l *AccessLog) writeLine(bp *[]byte, b []byte) {
	b = append(b, '\n')
	l.mu.Lock()
	l.w.Write(b)
	l.mu.Unlock()
	if cap(b) == smallBufSize {
		*bp = b[:cap(b)]
		smallBufs.Put(bp)
	}
}

func (e *accessEntry) appendCombined(b []byte) []byte {
	b = appendOr(b, e.client, "-")
	b = append(b, " - - ["...)
	b = e.start.AppendFormat(b, "02/Jan/2006:15:04:05 -0700")
	b = append(b, "] \""...)
	switch {
	case e.raw:
		b = appendEscaped(b, e.target)
	case e.method == nil:
		b = append(b, '-')
	default:
		b = appendEscaped(b, e.method)
		b = append(b, ' ')
		b = appendEscaped(b, e.target)
		b = append(b, ' ')
		b = e.appendProto(b)
	}
	b = append(b, "\" "...)
	b = strconv.AppendInt(b, int64(e.status), 10)
	b = append(b, ' ')
	if e.bytes > 0 {
		b = strconv.AppendInt(b, e.bytes, 10)
	} else {
		b = append(b, '-')
	}
	b = append(b, " \""...)
	b = appendEscapedOr(b, e.referer)
	b = append(b, "\" \""...)
	b = appendEscapedOr(b, e.userAgent)
	b = append(b, '"')
	return b
}

// appendProto appends the request's protocol version: HTTP/1.0, HTTP/1.1 or HTTP/2.0.
func (e *accessEntry) appendProto(b []byte) []byte {
	if e.h2 {
		return append(b, "HTTP/2.0"...)
	}
	b = append(b, "HTTP/1."...)
	return strconv.AppendInt(b, int64(e.minor), 10)
}

func (e *accessEntry) appendJSON(b []byte) []byte {
	b = append(b, `{"time":"`...)
	b = e.start.AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","client":`...)
	b = appendJSONString(b, e.client)
	b = append(b, `,"frontend":`...)
	b = appendJSONString(b, []byte(e.frontend))
	b = append(b, `,"method":`...)
	b = appendJSONString(b, e.method)
	b = append(b, `,"host":`...)
	b = appendJSONString(b, e.host)
	b = append(b, `,"uri":`...)
	b = appendJSONString(b, e.target)
	b = append(b, `,"proto":"`...)
	b = e.appendProto(b)
	b = append(b, `","status":`...)
	b = strconv.AppendInt(b, int64(e.status), 10)
	b = append(b, `,"bytes":`...)
	b = strconv.AppendInt(b, e.bytes, 10)
	b = append(b, `,"route":`...)
	b = appendJSONString(b, []byte(e.route))
	b = append(b, `,"backend":`...)
	b = appendJSONString(b, []byte(e.backend))
	b = append(b, `,"server":`...)
	b = appendJSONString(b, []byte(e.server))
	b = append(b, `,"duration_ms":`...)
	b = strconv.AppendFloat(b, float64(e.duration.Microseconds())/1000, 'f', 3, 64)
	b = append(b, `,"referer":`...)
	b = appendJSONString(b, e.referer)
	b = append(b, `,"user_agent":`...)
	b = appendJSONString(b, e.userAgent)
	b = append(b, '}')
	return b
}

func appendOr(b, v []byte, def string) []byte {
	if len(v) == 0 {
		return append(b, def...)
	}
	return append(b, v...)
}

func appendEscapedOr(b, v []byte) []byte {
	if len(v) == 0 {
		return append(b, '-')
	}
	return appendEscaped(b, v)
}

// appendEscaped writes v with quotes, backslashes and non-printable bytes escaped as \xHH, the way
// nginx escapes log fields, so a client cannot forge log lines.
func appendEscaped(b, v []byte) []byte {
	for _, c := range v {
		if c == '"' || c == '\\' || c < ' ' || c >= 0x7f {
			b = append(b, '\\', 'x', upperHex[c>>4], upperHex[c&15])
			continue
		}
		b = append(b, c)
	}
	return b
}

func appendJSONString(b, v []byte) []byte {
	b = append(b, '"')
	for i := 0; i < len(v); {
		c := v[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c < ' ' || c == 0x7f:
				b = append(b, '\\', 'u', '0', '0', upperHex[c>>4], upperHex[c&15])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, n := utf8.DecodeRune(v[i:])
		if r == utf8.RuneError && n == 1 {
			b = append(b, `\ufffd`...)
		} else {
			b = append(b, v[i:i+n]...)
		}
		i += n
	}
	return append(b, '"')
}

// Session is one L4 session for the access log: a TCP connection or a UDP flow of a tcp or udp
// frontend, logged once when it ends.
type Session struct {
	Start time.Time
	// Transport is "tcp" or "udp".
	Transport string
	Client    netip.AddrPort
	Frontend  string
	// Backend and Server are empty when the session ended before one was chosen.
	Backend, Server string
	// BytesIn and BytesOut are the bytes from the client to the server and back.
	BytesIn, BytesOut int64
	Duration          time.Duration
	// Termination says how the session ended: closed (both sides finished), idle_timeout,
	// error, shutdown, no_backend, connect_failed, rejected, tls_failed, ...
	Termination string
}

// WriteSession writes one L4 session's line through the same buffer as the requests: in the
// combined format
//
//	CLIENT:PORT - - [TIME] "TCP FRONTEND" - BYTES_OUT "-" "-" backend=B server=S bytes_in=N duration_ms=D termination=T
//
// (the request and status fields of an HTTP line hold the transport and frontend, and "-"), or
// as a JSON object with "type": "tcp" or "udp".
func (l *AccessLog) WriteSession(s *Session) {
	bp := smallBufs.Get().(*[]byte)
	b := (*bp)[:0]
	if l.json {
		b = s.appendJSON(b)
	} else {
		b = s.appendCombined(b)
	}
	l.writeLine(bp, b)
}

func (s *Session) appendCombined(b []byte) []byte {
	if s.Client.IsValid() {
		b = s.Client.AppendTo(b)
	} else {
		b = append(b, '-')
	}
	b = append(b, " - - ["...)
	b = s.Start.AppendFormat(b, "02/Jan/2006:15:04:05 -0700")
	b = append(b, "] \""...)
	for _, c := range []byte(s.Transport) {
		if 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		b = append(b, c)
	}
	b = append(b, ' ')
	b = appendEscaped(b, []byte(s.Frontend))
	b = append(b, "\" - "...)
	if s.BytesOut > 0 {
		b = strconv.AppendInt(b, s.BytesOut, 10)
	} else {
		b = append(b, '-')
	}
	b = append(b, ` "-" "-" backend=`...)
	b = appendEscapedOr(b, []byte(s.Backend))
	b = append(b, " server="...)
	b = appendEscapedOr(b, []byte(s.Server))
	b = append(b, " bytes_in="...)
	b = strconv.AppendInt(b, s.BytesIn, 10)
	b = append(b, " duration_ms="...)
	b = strconv.AppendFloat(b, float64(s.Duration.Microseconds())/1000, 'f', 3, 64)
	b = append(b, " termination="...)
	b = appendEscapedOr(b, []byte(s.Termination))
	return b
}

func (s *Session) appendJSON(b []byte) []byte {
	b = append(b, `{"time":"`...)
	b = s.Start.AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","type":`...)
	b = appendJSONString(b, []byte(s.Transport))
	b = append(b, `,"client":"`...)
	if s.Client.IsValid() {
		b = s.Client.AppendTo(b)
	}
	b = append(b, `","frontend":`...)
	b = appendJSONString(b, []byte(s.Frontend))
	b = append(b, `,"backend":`...)
	b = appendJSONString(b, []byte(s.Backend))
	b = append(b, `,"server":`...)
	b = appendJSONString(b, []byte(s.Server))
	b = append(b, `,"bytes_in":`...)
	b = strconv.AppendInt(b, s.BytesIn, 10)
	b = append(b, `,"bytes_out":`...)
	b = strconv.AppendInt(b, s.BytesOut, 10)
	b = append(b, `,"duration_ms":`...)
	b = strconv.AppendFloat(b, float64(s.Duration.Microseconds())/1000, 'f', 3, 64)
	b = append(b, `,"termination":`...)
	b = appendJSONString(b, []byte(s.Termination))
	b = append(b, '}')
	return b
}

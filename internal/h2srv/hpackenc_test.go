package h2srv

import (
	"bytes"
	"strings"
	"testing"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// decodeBlock decodes a header block with x/net's decoder, which also checks the encoding.
func decodeBlock(t testing.TB, dec *hpack.Decoder, b []byte) []hpack.HeaderField {
	t.Helper()
	fields, err := dec.DecodeFull(b)
	if err != nil {
		t.Fatalf("decode %x: %v", b, err)
	}
	return fields
}

// TestHPACKEncode: statuses, fields with static and new names, empty and long values (integers
// beyond their prefix) decode back as they were, twice from one decoder: nothing depends on a
// dynamic table.
func TestHPACKEncode(t *testing.T) {
	in := []hpack.HeaderField{
		{Name: "content-type", Value: "text/html"},
		{Name: "server", Value: "nginx"},
		{Name: "x-empty", Value: ""},
		{Name: "set-cookie", Value: strings.Repeat("c", 300)},
		{Name: strings.Repeat("n", 200), Value: strings.Repeat("v", 70000)},
		{Name: "www-authenticate", Value: "Basic"},
		{Name: "accept-charset", Value: "utf-8"},
	}
	dec := hpack.NewDecoder(4096, nil)
	dec.SetMaxStringLength(1 << 20)
	for _, status := range []int{200, 204, 206, 304, 400, 404, 500, 100, 103, 201, 302, 503, 599} {
		var b []byte
		b = appendStatus(b, status)
		for _, f := range in {
			b = appendField(b, f.Name, f.Value)
		}
		for range 2 {
			got := decodeBlock(t, dec, b)
			if len(got) != len(in)+1 || got[0].Name != ":status" || got[0].Value != statusString(status) {
				t.Fatalf("status %d: decoded %v", status, got[:1])
			}
			for i, f := range in {
				if got[i+1].Name != f.Name || got[i+1].Value != f.Value {
					t.Fatalf("field %d: %q: %.20q, want %q: %.20q", i, got[i+1].Name, got[i+1].Value, f.Name, f.Value)
				}
			}
		}
	}
	// Common statuses are one byte; a field with a static name costs its value plus three bytes.
	if b := appendStatus(nil, 200); !bytes.Equal(b, []byte{0x88}) {
		t.Fatalf(":status 200 = %x", b)
	}
	if b := appendField(nil, "server", "nginx"); len(b) != 3+len("nginx") {
		t.Fatalf("server: nginx = %x", b)
	}
	if n := testing.AllocsPerRun(100, func() {
		var arr [64]byte
		appendField(arr[:0], []byte("content-type"), []byte("text/plain"))
	}); n != 0 {
		t.Fatalf("appendField allocates %v times", n)
	}
}

// FuzzAppendField: any lower-case token name and any value decode back as they were.
func FuzzAppendField(f *testing.F) {
	f.Add("content-length", "12")
	f.Add("x-custom", strings.Repeat("x", 127))
	f.Add(":status", "200")
	f.Add("e", "")
	f.Fuzz(func(t *testing.T, name, value string) {
		if name == "" || strings.ToLower(name) != name || !validToken(strings.TrimPrefix(name, ":")) {
			return
		}
		b := appendField(nil, name, value)
		if !bytes.Equal(b, appendField(nil, []byte(name), []byte(value))) {
			t.Fatal("string and byte encodings differ")
		}
		dec := hpack.NewDecoder(4096, nil)
		dec.SetMaxStringLength(1 << 20)
		got := decodeBlock(t, dec, b)
		if len(got) != 1 || got[0].Name != name || got[0].Value != value {
			t.Fatalf("decoded %v", got)
		}
	})
}

// TestTableSizeUpdate: after the client lowers SETTINGS_HEADER_TABLE_SIZE, the next header
// block starts with a dynamic table size update (RFC 7541 section 4.2; nghttp2 refuses a block
// without it), and only that one; raising it asks for nothing.
func TestTableSizeUpdate(t *testing.T) {
	var c Conn
	c.encTableSize = 4096
	c.noteTableSizeLocked(8192)
	c.beginBlockLocked()
	if len(c.hbuf) != 0 {
		t.Fatalf("a raised limit starts the block with %x", c.hbuf)
	}
	c.noteTableSizeLocked(100)
	c.beginBlockLocked()
	if !bytes.Equal(c.hbuf, []byte{0x20}) {
		t.Fatalf("block after a lowered limit starts with %x, want 20", c.hbuf)
	}
	c.beginBlockLocked()
	c.noteTableSizeLocked(0) // already 0: nothing to say
	c.beginBlockLocked()
	if len(c.hbuf) != 0 {
		t.Fatalf("later block starts with %x", c.hbuf)
	}

	// On the wire: a client that starts with a table size of 0 gets the update first.
	ts := startServer(t, nil, HandlerFunc(func(s *Stream) {
		s.AddField([]byte("Server"), []byte("test"))
		s.WriteHeader(200, true)
	}), false)
	rc := dialRaw(t, ts.addr, http2.Setting{ID: http2.SettingHeaderTableSize, Val: 0})
	rc.fr.ReadMetaHeaders = nil
	for id := uint32(1); id <= 3; id += 2 {
		rc.get(id, true)
		f := rc.expect("HEADERS", func(f http2.Frame) bool { _, ok := f.(*http2.HeadersFrame); return ok })
		block := f.(*http2.HeadersFrame).HeaderBlockFragment()
		if first := id == 1; first != (block[0] == 0x20) {
			t.Fatalf("stream %d: block %x", id, block)
		}
	}
}

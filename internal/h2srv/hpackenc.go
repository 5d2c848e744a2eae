package h2srv

// The response side of HPACK (RFC 7541), hand-written because it is on every response's path:
// every field goes out as a literal without indexing (section 6.2.2), its name by the static
// table's index when the table has it, :status 200, 204, 206, 304, 400, 404 and 500 as their
// static entries. Nothing enters the dynamic table, so encoding needs no per-connection state:
// a stream encodes its fields while they arrive, outside the connection's lock, and no field
// value stays referenced by an encoder table after its stream ended. Strings are not
// Huffman-coded. The price is header bytes: a response's fields take about 100 bytes more than
// with indexing and Huffman codes, which x/net's encoder used here did at about 3.5 % of the CPU
// of a proxied request (its table searches and the strings they kept).

// staticNames maps a lower-case field name to its first index in the static table (Appendix A).
var staticNames = map[string]uint8{
	":authority": 1, ":method": 2, ":path": 4, ":scheme": 6, ":status": 8,
	"accept-charset": 15, "accept-encoding": 16, "accept-language": 17, "accept-ranges": 18,
	"accept": 19, "access-control-allow-origin": 20, "age": 21, "allow": 22, "authorization": 23,
	"cache-control": 24, "content-disposition": 25, "content-encoding": 26,
	"content-language": 27, "content-length": 28, "content-location": 29, "content-range": 30,
	"content-type": 31, "cookie": 32, "date": 33, "etag": 34, "expect": 35, "expires": 36,
	"from": 37, "host": 38, "if-match": 39, "if-modified-since": 40, "if-none-match": 41,
	"if-range": 42, "if-unmodified-since": 43, "last-modified": 44, "link": 45, "location": 46,
	"max-forwards": 47, "proxy-authenticate": 48, "proxy-authorization": 49, "range": 50,
	"referer": 51, "refresh": 52, "retry-after": 53, "server": 54, "set-cookie": 55,
	"strict-transport-security": 56, "transfer-encoding": 57, "user-agent": 58, "vary": 59,
	"via": 60, "www-authenticate": 61,
}

// appendInt appends i with an n-bit prefix (section 5.1); first holds the bits above the prefix.
func appendInt(b []byte, first byte, n uint, i uint64) []byte {
	max := uint64(1)<<n - 1
	if i < max {
		return append(b, first|byte(i))
	}
	b = append(b, first|byte(max))
	for i -= max; i >= 128; i >>= 7 {
		b = append(b, byte(i&0x7f|0x80))
	}
	return append(b, byte(i))
}

// appendString appends s as a string literal without Huffman coding (section 5.2).
func appendString[S ~string | ~[]byte](b []byte, s S) []byte {
	b = appendInt(b, 0, 7, uint64(len(s)))
	return append(b, s...)
}

// appendField appends a field as a literal without indexing; name is lower case.
func appendField[S ~string | ~[]byte](b []byte, name, value S) []byte {
	if i, ok := staticNames[string(name)]; ok {
		b = appendInt(b, 0, 4, uint64(i))
	} else {
		b = append(b, 0)
		b = appendString(b, name)
	}
	return appendString(b, value)
}

// appendStatus appends :status, from the static table when it has the code.
func appendStatus(b []byte, status int) []byte {
	switch status {
	case 200:
		return append(b, 0x80|8)
	case 204:
		return append(b, 0x80|9)
	case 206:
		return append(b, 0x80|10)
	case 304:
		return append(b, 0x80|11)
	case 400:
		return append(b, 0x80|12)
	case 404:
		return append(b, 0x80|13)
	case 500:
		return append(b, 0x80|14)
	}
	b = appendInt(b, 0, 4, 8)
	return appendString(b, statusString(status))
}

// appendTableSizeUpdate appends a dynamic table size update to size (section 6.3).
func appendTableSizeUpdate(b []byte, size uint32) []byte {
	return appendInt(b, 0x20, 5, uint64(size))
}

// beginBlockLocked starts a header block in c.hbuf. After the client lowered
// SETTINGS_HEADER_TABLE_SIZE below the size its decoder assumes for us, the block starts with
// the size update RFC 7541 section 4.2 requires; the table is never used, so it shrinks to 0.
func (c *Conn) beginBlockLocked() {
	c.hbuf = c.hbuf[:0]
	if c.tableUpdate {
		c.hbuf = appendTableSizeUpdate(c.hbuf, 0)
		c.tableUpdate = false
	}
}

// noteTableSizeLocked handles SETTINGS_HEADER_TABLE_SIZE: a limit below the size the decoder
// assumes for the encoder's table (4096 at first, 0 after an update) asks for an update.
func (c *Conn) noteTableSizeLocked(v uint32) {
	if v < c.encTableSize {
		c.encTableSize = 0
		c.tableUpdate = true
	}
}

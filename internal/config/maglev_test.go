package config

import "testing"

// TestMaglevDefaults: a maglev backend gets the hash key and table size defaults, keeps the
// values it sets, and no other algorithm gets a table size.
func TestMaglevDefaults(t *testing.T) {
	got := mustParse(t, `
backends:
  - {name: a, algorithm: maglev}
  - {name: b, algorithm: maglev, hash_key: "cookie:sid", maglev_table_size: 655373}
  - {name: c, algorithm: hash}
`)
	tests := []struct {
		name    string
		b       Backend
		hashKey string
		size    int
	}{
		{name: "defaults", b: got.Backends[0], hashKey: "uri", size: 65537},
		{name: "explicit", b: got.Backends[1], hashKey: "cookie:sid", size: 655373},
		{name: "hash", b: got.Backends[2], hashKey: "uri", size: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.b.HashKey != tt.hashKey || tt.b.MaglevTableSize != tt.size {
				t.Errorf("hash_key %q, maglev_table_size %d; want %q, %d", tt.b.HashKey, tt.b.MaglevTableSize, tt.hashKey, tt.size)
			}
		})
	}
}

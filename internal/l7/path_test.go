package l7

import "testing"

func TestNormalizePath(t *testing.T) {
	tests := []struct {
		name, in, want string
		ok             bool
	}{
		{"root", "/", "/", true},
		{"plain", "/a/b", "/a/b", true},
		{"trailing slash kept", "/a/b/", "/a/b/", true},
		{"dotdot", "/api/../admin", "/admin", true},
		{"double slash", "//admin", "/admin", true},
		{"many slashes", "/a///b//", "/a/b/", true},
		{"encoded unreserved", "/%61dmin", "/admin", true},
		{"encoded dot segment", "/api/%2e%2e/admin", "/admin", true},
		{"encoded dot upper", "/api/%2E%2E/admin", "/admin", true},
		{"dot", "/a/./b", "/a/b", true},
		{"dotdot above root", "/../../a", "/a", true},
		{"trailing dotdot", "/a/b/..", "/a/", true},
		{"trailing dot", "/a/b/.", "/a/b/", true},
		{"reserved stays encoded, hex upper", "/a%2fb", "/a%2Fb", true},
		{"space stays encoded", "/a%20b", "/a%20b", true},
		{"dots in names", "/a..b/.c", "/a..b/.c", true},
		{"encoded slash dot segment", "/api%2F..%2Fadmin", "", false},
		{"encoded backslash dot segment", "/api%5C..%5Cadmin", "", false},
		{"encoded NUL", "/a%00", "", false},
		{"bad escape", "/a%zz", "", false},
		{"short escape", "/a%2", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := normalizePath(nil, []byte(tt.in))
			if ok != tt.ok || ok && string(got) != tt.want {
				t.Fatalf("normalizePath(%q) = %q, %v; want %q, %v", tt.in, got, ok, tt.want, tt.ok)
			}
			if ok {
				// Normal form is a fixed point.
				again, ok2 := normalizePath(nil, got)
				if !ok2 || string(again) != string(got) {
					t.Errorf("not idempotent: %q -> %q", got, again)
				}
			}
		})
	}
}

func TestPathIsNormal(t *testing.T) {
	for in, want := range map[string]bool{
		"/": true, "/a/b": true, "/a/b/": true, "//a": false, "/a/../b": false, "/a/./b": false,
		"/%61": false, "/a//": false, "": false, "a": false, "/..": false, "/.a": true,
	} {
		if got := pathIsNormal([]byte(in)); got != want {
			t.Errorf("pathIsNormal(%q) = %v, want %v", in, got, want)
		}
		if want {
			n, _ := normalizePath(nil, []byte(in))
			if string(n) != in {
				t.Errorf("pathIsNormal(%q) but normalizePath gives %q", in, n)
			}
		}
	}
}

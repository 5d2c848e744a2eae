package config

import (
	"errors"
	"strings"
	"testing"
)

// backendB is a valid backend that the frontend cases refer to; it sits at the top of the file so
// that the lines of the case-specific part below it are easy to count (they start at line 3).
const backendB = "backends:\n  - {name: b, servers: [{address: \"127.0.0.1:9000\"}]}\n"

// parseErrorCases are files with problems and the exact errors they give; FuzzParse seeds from
// them too.
var parseErrorCases = []struct {
	name string
	data string
	env  map[string]string
	want []string // every error line, exactly, in order
}{
	// Decoding.
	{
		name: "yaml syntax error",
		data: "log:\n  level: [info\n",
		want: []string{"t.yaml:1: invalid YAML: did not find expected ',' or ']'"},
	},
	{
		name: "second document",
		data: "log: {level: info}\n---\nlog: {level: debug}\n",
		want: []string{"t.yaml:2: invalid YAML: only one YAML document is supported; remove the second one"},
	},
	{
		name: "top level is a list",
		data: "- a\n",
		want: []string{"t.yaml:1:1: expected a mapping, got a list"},
	},
	{
		name: "unknown top-level key",
		data: "admn:\n  listen: x\n",
		want: []string{`t.yaml:1:1: unknown key "admn" (valid: admin, log, frontends, backends, vrrp, bgp, kubernetes, etcd, shutdown_timeout)`},
	},
	{
		name: "unknown nested key",
		data: "backends:\n  - name: b\n    servers:\n      - address: \"h:1\"\n        wieght: 3\n",
		want: []string{`t.yaml:5:9: backends[0].servers[0]: unknown key "wieght" (valid: name, address, weight, state, backup, health_check)`},
	},
	{
		name: "duplicate key",
		data: "log:\n  level: info\n  level: debug\n",
		want: []string{`t.yaml:3:3: log.level: duplicate key "level" (first at line 2)`},
	},
	{
		name: "mapping for a string",
		data: "admin:\n  token: {a: b}\n",
		want: []string{"t.yaml:2:10: admin.token: expected a string, got a mapping"},
	},
	{
		name: "list for a string",
		data: "log:\n  level: [info]\n",
		want: []string{"t.yaml:2:10: log.level: expected a string, got a list"},
	},
	{
		name: "scalar for a list",
		data: "frontends: web\n",
		want: []string{`t.yaml:1:12: frontends: expected a list, got "web"`},
	},
	{
		name: "scalar for a mapping",
		data: "admin: on\n",
		want: []string{`t.yaml:1:8: admin: expected a mapping, got "on"`},
	},
	{
		name: "scalar list entry for a struct",
		data: "backends: [b]\n",
		want: []string{`t.yaml:1:12: backends[0]: expected a mapping, got "b"`},
	},
	{
		name: "not an integer",
		data: "backends: [{name: b, servers: [{address: \"h:1\", weight: abc}]}]\n",
		want: []string{`t.yaml:1:57: backends[0].servers[0].weight: expected an integer, got "abc"`},
	},
	{
		name: "float for an integer",
		data: "backends: [{name: b, pool: {max_idle: 1.5}}]\n",
		want: []string{`t.yaml:1:39: backends[0].pool.max_idle: expected an integer, got "1.5"`},
	},
	{
		name: "huge integer",
		data: "backends: [{name: b, pool: {max_idle: 99999999999999999999}}]\n",
		want: []string{"t.yaml:1:39: backends[0].pool.max_idle: integer 99999999999999999999 is out of range"},
	},
	{
		name: "yes is not a bool",
		data: "backends: [{name: b, servers: [{address: \"h:1\", backup: yes}]}]\n",
		want: []string{`t.yaml:1:57: backends[0].servers[0].backup: expected true or false, got "yes"`},
	},
	{
		name: "duration without unit",
		data: "backends: [{name: b, timeouts: {connect: 30}}]\n",
		want: []string{"t.yaml:1:42: backends[0].timeouts.connect: duration 30 needs a unit, e.g. 30s or 30ms"},
	},
	{
		name: "duration garbage",
		data: "backends: [{name: b, timeouts: {connect: 5 seconds}}]\n",
		want: []string{`t.yaml:1:42: backends[0].timeouts.connect: expected a duration like 500ms or 2s, got "5 seconds"`},
	},
	{
		name: "duration list",
		data: "backends: [{name: b, timeouts: {connect: [1s]}}]\n",
		want: []string{"t.yaml:1:42: backends[0].timeouts.connect: expected a duration, got a list"},
	},
	{
		name: "string map value not a scalar",
		data: backendB + "frontends:\n  - name: f\n    listen: [\":0\"]\n    routes: [{backend: b, match: {headers: {X-A: [a]}}}]\n",
		want: []string{"t.yaml:6:50: frontends[0].routes[0].match.headers.X-A: expected a string, got a list"},
	},
	{
		name: "string map not a mapping",
		data: backendB + "frontends:\n  - name: f\n    listen: [\":0\"]\n    routes: [{backend: b, match: {headers: [a]}}]\n",
		want: []string{"t.yaml:6:44: frontends[0].routes[0].match.headers: expected a mapping of strings, got a list"},
	},
	{
		name: "string list of mappings",
		data: backendB + "frontends:\n  - name: f\n    listen: [\":0\"]\n    routes: [{backend: b, match: {host: {a: b}}}]\n",
		want: []string{"t.yaml:6:41: frontends[0].routes[0].match.host: expected a string or a list of strings, got a mapping"},
	},
	{
		name: "alias",
		data: "admin: {listen: &l \"127.0.0.1:1\", token: *l}\n",
		want: []string{"t.yaml:1:42: admin.token: aliases are not supported"},
	},
	{
		name: "merge key",
		data: "log: &base {level: info}\nadmin:\n  <<: *base\n",
		want: []string{"t.yaml:3:3: admin: merge keys (<<) are not supported"},
	},
	{
		name: "binary tag",
		data: "admin: {token: !!binary c2VjcmV0}\n",
		want: []string{"t.yaml:1:16: admin.token: tag !!binary is not supported"},
	},
	{
		name: "custom tag",
		data: "admin: {token: !vault secret}\n",
		want: []string{"t.yaml:1:16: admin.token: tag !vault is not supported"},
	},
	{
		name: "env unset",
		data: "admin:\n  listen: 127.0.0.1:9900\n  token: ${WAAGE_TEST_UNSET}\n",
		want: []string{"t.yaml:3:10: admin.token: environment variable WAAGE_TEST_UNSET is not set (write ${WAAGE_TEST_UNSET:-default} to give a default)"},
	},
	{
		name: "env unterminated",
		data: "admin: {token: \"${A\"}\n",
		want: []string{`t.yaml:1:16: admin.token: unterminated "${A" (close it with }, or write $$ for a literal $)`},
	},
	{
		name: "env bad name",
		data: "admin: {token: \"${1A}\"}\n",
		want: []string{"t.yaml:1:16: admin.token: invalid variable reference ${1A}: want ${NAME} or ${NAME:-default}"},
	},
	{
		name: "env not expanded in keys",
		data: "log: {\"${K}\": info}\n",
		env:  map[string]string{"K": "level"},
		want: []string{`t.yaml:1:7: log: unknown key "${K}" (valid: level, format, access, access_format)`},
	},
	{
		name: "env value converted after expansion",
		data: "backends: [{name: b, servers: [{address: \"h:1\", weight: \"${W}\"}]}]\n",
		env:  map[string]string{"W": "heavy"},
		want: []string{`t.yaml:1:57: backends[0].servers[0].weight: expected an integer, got "heavy"`},
	},
	{
		name: "bad name does not cascade",
		data: "backends:\n  - name: [b]\nfrontends:\n  - {name: f, listen: [\":0\"], default_backend: b}\n",
		want: []string{"t.yaml:2:11: backends[0].name: expected a string, got a list"},
	},

	// admin and log.
	{
		name: "admin listen not host:port",
		data: "admin: {listen: localhost}\n",
		want: []string{`t.yaml:1:17: admin.listen: invalid address "localhost": want host:port`},
	},
	{
		name: "admin off loopback needs a token",
		data: "admin:\n  listen: 0.0.0.0:9900\n",
		want: []string{"t.yaml:2:11: admin.token: required when admin.listen is not loopback"},
	},
	{
		name: "admin on all interfaces with an empty token",
		data: "admin:\n  listen: \":9900\"\n  token: \"${T:-}\"\n",
		want: []string{"t.yaml:3:10: admin.token: required when admin.listen is not loopback"},
	},
	{
		name: "log enums",
		data: "log: {level: loud, format: xml, access_format: clf, access: off}\n",
		want: []string{
			`t.yaml:1:14: log.level: invalid value "loud" (valid: debug, info, warn, error)`,
			`t.yaml:1:28: log.format: invalid value "xml" (valid: text, json)`,
			`t.yaml:1:48: log.access_format: invalid value "clf" (valid: combined, json)`,
		},
	},

	// Frontends.
	{
		name: "frontend name required, charset, unique",
		data: backendB + "frontends:\n  - {listen: [\":0\"], default_backend: b}\n  - {name: \"my web\", listen: [\":0\"]}\n  - {name: w, listen: [\":0\"]}\n  - {name: w, listen: [\":0\"]}\n",
		want: []string{
			"t.yaml:4:5: frontends[0].name: is required",
			`t.yaml:5:12: frontends[1].name: invalid frontend name "my web": use letters, digits, '_', '.' and '-', starting with a letter or digit`,
			`t.yaml:7:12: frontends[3].name: duplicate frontend name "w" (also frontends[2])`,
		},
	},
	{
		name: "mode",
		data: backendB + "frontends:\n  - {name: f, mode: https, listen: [\":0\"]}\n",
		want: []string{`t.yaml:4:21: frontends[0].mode: invalid value "https" (valid: http, tcp, udp)`},
	},
	{
		name: "listen required",
		data: backendB + "frontends:\n  - name: f\n    default_backend: b\n",
		want: []string{"t.yaml:4:5: frontends[0].listen: at least one address is required"},
	},
	{
		name: "listen addresses",
		data: backendB + "frontends:\n  - name: f\n    listen: [\"127.0.0.1:70000\", \"127.0.0.1:http\", \"::1:80\", \"[127.0.0.1]:80\", \"bad host:80\"]\n",
		want: []string{
			`t.yaml:5:14: frontends[0].listen[0]: invalid address "127.0.0.1:70000": port must be a number from 0 to 65535`,
			`t.yaml:5:33: frontends[0].listen[1]: invalid address "127.0.0.1:http": port must be a number from 0 to 65535`,
			`t.yaml:5:51: frontends[0].listen[2]: invalid address "::1:80": want host:port (write IPv6 addresses in brackets, as in [::1]:80)`,
			`t.yaml:5:61: frontends[0].listen[3]: invalid address "[127.0.0.1]:80": only IPv6 addresses go in brackets`,
			`t.yaml:5:79: frontends[0].listen[4]: invalid address "bad host:80": "bad host" is neither an IP address nor a host name`,
		},
	},
	{
		name: "listen address used twice per transport",
		data: backendB + "frontends:\n" +
			"  - {name: a, listen: [\"127.0.0.1:80\", \"127.0.0.1:0\"], default_backend: b}\n" +
			"  - {name: c, mode: tcp, listen: [\"127.0.0.1:080\", \"127.0.0.1:0\"], backend: b}\n" +
			"  - {name: d, mode: udp, listen: [\"127.0.0.1:80\"], backend: b}\n" +
			"  - {name: e, listen: [\"[::0]:81\", \"[::]:81\"], default_backend: b}\n",
		want: []string{
			`t.yaml:5:35: frontends[1].listen[0]: address "127.0.0.1:080" is already used by frontends[0].listen[0]`,
			`t.yaml:7:36: frontends[3].listen[1]: address "[::]:81" is already used by frontends[3].listen[0]`,
		},
	},
	{
		name: "backend on an http frontend",
		data: backendB + "frontends:\n  - {name: f, listen: [\":0\"], backend: b}\n",
		want: []string{"t.yaml:4:40: frontends[0].backend: not allowed on an http frontend; use default_backend"},
	},
	{
		name: "undefined backends with a suggestion",
		data: backendB + "frontends:\n  - name: f\n    listen: [\":0\"]\n    routes: [{backend: b}, {backend: api}]\n    default_backend: bb\n",
		want: []string{
			`t.yaml:6:38: frontends[0].routes[1].backend: backend "api" is not defined`,
			`t.yaml:7:22: frontends[0].default_backend: backend "bb" is not defined (did you mean "b"?)`,
		},
	},
	{
		name: "tcp and udp frontends need a backend",
		data: backendB + "frontends:\n  - {name: t, mode: tcp, listen: [\":0\"]}\n  - {name: u, mode: udp, listen: [\":0\"], default_backend: b}\n",
		want: []string{
			"t.yaml:4:5: frontends[0].backend: required on a tcp frontend",
			"t.yaml:5:59: frontends[1].default_backend: only used with routes; use backend on a udp frontend",
		},
	},
	{
		name: "udp routes",
		data: backendB + "frontends:\n  - name: u\n    mode: udp\n    listen: [\":0\"]\n    backend: b\n    routes: [{backend: b}]\n",
		want: []string{"t.yaml:8:13: frontends[0].routes: not supported on udp frontends; name one backend with backend"},
	},
	{
		name: "tcp routes",
		data: backendB + "frontends:\n  - name: t\n    mode: tcp\n    listen: [\":0\"]\n    backend: b\n    routes:\n      - match: {host: a.example.com, path_prefix: /x}\n        backend: b\n",
		want: []string{
			"t.yaml:4:5: frontends[0].default_backend: required on a tcp frontend with routes",
			"t.yaml:7:14: frontends[0].backend: not allowed together with routes; use default_backend",
			"t.yaml:9:23: frontends[0].routes[0].match.host: only valid on http frontends; use match.sni for a TLS server name",
			"t.yaml:9:51: frontends[0].routes[0].match.path_prefix: only valid on http frontends",
		},
	},
	{
		name: "route names",
		data: backendB + "frontends:\n  - name: f\n    listen: [\":0\"]\n    routes:\n" +
			"      - {name: route1, backend: b}\n" +
			"      - {backend: b}\n" +
			"      - {name: \"a/b\", backend: b}\n" +
			"      - {name: route1, backend: b}\n" +
			"      - {name: x}\n",
		want: []string{
			`t.yaml:8:9: frontends[0].routes[1]: the default name "route1" of this route is taken by frontends[0].routes[0]; name the route`,
			`t.yaml:9:16: frontends[0].routes[2].name: invalid route name "a/b": use letters, digits, '_', '.' and '-', starting with a letter or digit`,
			`t.yaml:10:16: frontends[0].routes[3].name: duplicate route name "route1" (also frontends[0].routes[0])`,
			"t.yaml:11:9: frontends[0].routes[4].backend: is required",
		},
	},
	{
		name: "match hosts",
		data: backendB + "frontends:\n  - name: f\n    listen: [\":0\"]\n    routes:\n      - backend: b\n        match:\n          host: [API.Example.com, \"*.example.com\", \"a.*.example.com\", \"example.com:8080\", \"-bad.example\", \"\", \"2001:db8::1\", \"*\"]\n",
		want: []string{
			`t.yaml:9:52: frontends[0].routes[0].match.host[2]: invalid host "a.*.example.com": only a leading wildcard label is allowed, as in *.example.com`,
			`t.yaml:9:71: frontends[0].routes[0].match.host[3]: invalid host "example.com:8080": must not include a port (hosts match without the port)`,
			`t.yaml:9:91: frontends[0].routes[0].match.host[4]: invalid host "-bad.example": want a host name like api.example.com or *.example.com`,
			`t.yaml:9:107: frontends[0].routes[0].match.host[5]: must not be empty`,
			`t.yaml:9:126: frontends[0].routes[0].match.host[7]: invalid host "*": only a leading wildcard label is allowed, as in *.example.com`,
		},
	},
	{
		name: "match paths and methods",
		data: backendB + "frontends:\n  - name: f\n    listen: [\":0\"]\n    routes:\n      - backend: b\n        match:\n          path: api\n          path_prefix: api/\n          path_regex: \"a(b\"\n          methods: [GET, get, \"GE T\"]\n",
		want: []string{
			`t.yaml:9:17: frontends[0].routes[0].match.path: must start with "/"`,
			`t.yaml:10:24: frontends[0].routes[0].match.path_prefix: must start with "/"`,
			"t.yaml:11:23: frontends[0].routes[0].match.path_regex: error parsing regexp: missing closing ): `a(b`",
			`t.yaml:12:26: frontends[0].routes[0].match.methods[1]: method "get" must be upper case (GET)`,
			`t.yaml:12:31: frontends[0].routes[0].match.methods[2]: invalid method "GE T"`,
		},
	},
	{
		name: "match conditions",
		data: backendB + "frontends:\n  - name: f\n    listen: [\":0\"]\n    routes:\n      - backend: b\n        match:\n" +
			"          headers: {\"X Bad\": x, X-Canary: \"~(\", X-Ok: \"~^a$\"}\n" +
			"          cookies: {\"a;b\": \"1\"}\n" +
			"          query: {\"\": \"1\", q: \"~[\"}\n" +
			"          user_agent: \"~(?i\"\n" +
			"          source: [10.0.0.0/8, \"2001:db8::/32\", 10.0.0.0/33, 10.0.0, 192.0.2.1]\n",
		want: []string{
			`t.yaml:9:21: frontends[0].routes[0].match.headers.X Bad: invalid header name "X Bad"`,
			"t.yaml:9:43: frontends[0].routes[0].match.headers.X-Canary: error parsing regexp: missing closing ): `(`",
			`t.yaml:10:21: frontends[0].routes[0].match.cookies.a;b: invalid cookie name "a;b"`,
			`t.yaml:11:19: frontends[0].routes[0].match.query.: invalid query parameter name ""`,
			"t.yaml:11:31: frontends[0].routes[0].match.query.q: error parsing regexp: missing closing ]: `[`",
			"t.yaml:12:23: frontends[0].routes[0].match.user_agent: error parsing regexp: invalid or unsupported Perl syntax: `(?i`",
			`t.yaml:13:49: frontends[0].routes[0].match.source[2]: invalid source "10.0.0.0/33": want a CIDR (10.0.0.0/8) or an IP address`,
			`t.yaml:13:62: frontends[0].routes[0].match.source[3]: invalid source "10.0.0": want a CIDR (10.0.0.0/8) or an IP address`,
		},
	},
	{
		name: "managed header fields",
		data: backendB + "frontends:\n  - name: f\n    listen: [\":0\"]\n    routes:\n      - backend: b\n" +
			"        request_headers: {add: {Host: x}, remove: [host, Content-Length]}\n" +
			"        response_headers: {set: {Transfer-Encoding: gzip}, remove: [Host]}\n",
		want: []string{
			"t.yaml:8:33: frontends[0].routes[0].request_headers.add.Host: a request has exactly one Host; use set to replace it (add is not possible)",
			"t.yaml:8:52: frontends[0].routes[0].request_headers.remove[0]: a request has exactly one Host; use set to replace it (remove is not possible)",
			"t.yaml:8:58: frontends[0].routes[0].request_headers.remove[1]: Content-Length frames the message and is managed by waage; it cannot be changed",
			"t.yaml:9:34: frontends[0].routes[0].response_headers.set.Transfer-Encoding: Transfer-Encoding frames the message and is managed by waage; it cannot be changed",
		},
	},
	{
		name: "route rewrites",
		data: backendB + "frontends:\n  - name: f\n    listen: [\":0\"]\n    routes:\n      - backend: b\n        strip_prefix: api\n" +
			"        request_headers: {set: {X-A: \"a\\r\\nX-Evil: 1\"}, add: {\"X:B\": b}, remove: [\"X C\"]}\n" +
			"        response_headers: {set: {X-Z: \"\\0\"}}\n",
		want: []string{
			`t.yaml:8:23: frontends[0].routes[0].strip_prefix: must start with "/"`,
			"t.yaml:9:38: frontends[0].routes[0].request_headers.set.X-A: header value must not contain CR, LF or NUL",
			`t.yaml:9:63: frontends[0].routes[0].request_headers.add.X:B: invalid header name "X:B"`,
			`t.yaml:9:83: frontends[0].routes[0].request_headers.remove[0]: invalid header name "X C"`,
			"t.yaml:10:39: frontends[0].routes[0].response_headers.set.X-Z: header value must not contain CR, LF or NUL",
		},
	},
	{
		name: "route redirects",
		data: backendB + "frontends:\n  - name: f\n    listen: [\":0\"]\n    routes:\n" +
			"      - {match: {path: /x}, redirect: {scheme: ftp, host: \"a..b\", port: 70000, status: 200}, backend: b}\n" +
			"      - {match: {path: /x}, redirect: {path: \"/a b\", replace_prefix: /y}, strip_prefix: /x, rewrite: {path: /z}}\n" +
			"      - {match: {path: /x}, redirect: {replace_prefix: \"y\"}, request_headers: {set: {A: b}}, response_headers: {remove: [B]}}\n" +
			"      - {match: {path: /x}, redirect: {replace_prefix: /y}}\n",
		want: []string{
			`t.yaml:7:48: frontends[0].routes[0].redirect.scheme: invalid value "ftp" (valid: http, https)`,
			`t.yaml:7:59: frontends[0].routes[0].redirect.host: invalid host "a..b": want a host name like www.example.com or an IP address`,
			"t.yaml:7:73: frontends[0].routes[0].redirect.port: must be between 1 and 65535",
			"t.yaml:7:88: frontends[0].routes[0].redirect.status: invalid status 200 (valid: 301, 302, 303, 307, 308)",
			"t.yaml:7:103: frontends[0].routes[0].backend: not allowed with redirect (a redirect route answers by itself)",
			`t.yaml:8:46: frontends[0].routes[1].redirect.path: invalid path "/a b": must start with "/" and hold only the characters of a URL path, others %-escaped`,
			"t.yaml:8:70: frontends[0].routes[1].redirect.replace_prefix: cannot be combined with path",
			"t.yaml:8:89: frontends[0].routes[1].strip_prefix: has no effect on a route with redirect",
			"t.yaml:8:102: frontends[0].routes[1].rewrite: has no effect on a route with redirect",
			`t.yaml:9:56: frontends[0].routes[2].redirect.replace_prefix: invalid path "y": must start with "/" and hold only the characters of a URL path, others %-escaped`,
			"t.yaml:9:79: frontends[0].routes[2].request_headers: has no effect on a route with redirect",
			"t.yaml:9:112: frontends[0].routes[2].response_headers: has no effect on a route with redirect",
			"t.yaml:10:56: frontends[0].routes[3].redirect.replace_prefix: needs match.path_prefix (the prefix it replaces)",
		},
	},
	{
		name: "route path rewrites",
		data: backendB + "frontends:\n  - name: f\n    listen: [\":0\"]\n    routes:\n" +
			"      - {match: {path_prefix: /x}, rewrite: {}, backend: b}\n" +
			"      - {match: {path_prefix: /x}, rewrite: {path: /a, replace_prefix: /b}, strip_prefix: /x, backend: b}\n" +
			"      - {match: {path: /x}, rewrite: {replace_prefix: /b, path: \"/%zz\"}, backend: b}\n" +
			"      - {match: {path: /x}, rewrite: {replace_prefix: /b}, backend: b}\n" +
			"  - {name: t, mode: tcp, listen: [\":0\"], routes: [{match: {sni: a.example}, backend: b, rewrite: {path: /a}}], default_backend: b}\n",
		want: []string{
			"t.yaml:7:45: frontends[0].routes[0].rewrite: needs path or replace_prefix",
			"t.yaml:8:72: frontends[0].routes[1].rewrite.replace_prefix: cannot be combined with path",
			"t.yaml:8:91: frontends[0].routes[1].strip_prefix: cannot be combined with rewrite",
			"t.yaml:9:55: frontends[0].routes[2].rewrite.replace_prefix: cannot be combined with path",
			`t.yaml:9:65: frontends[0].routes[2].rewrite.path: invalid path "/%zz": must start with "/" and hold only the characters of a URL path, others %-escaped`,
			"t.yaml:10:55: frontends[0].routes[3].rewrite.replace_prefix: needs match.path_prefix (the prefix it replaces)",
			"t.yaml:11:98: frontends[1].routes[0].rewrite: only valid on http frontends",
		},
	},
	{
		name: "frontend timeouts",
		data: backendB + "frontends:\n  - {name: f, listen: [\":0\"], timeouts: {client_idle: -1s}}\n",
		want: []string{"t.yaml:4:55: frontends[0].timeouts.client_idle: must not be negative"},
	},

	// Backends.
	{
		name: "backend names",
		data: "backends:\n  - {servers: []}\n  - {name: \"a b\"}\n  - {name: b}\n  - {name: b}\n",
		want: []string{
			"t.yaml:2:5: backends[0].name: is required",
			`t.yaml:3:12: backends[1].name: invalid backend name "a b": use letters, digits, '_', '.' and '-', starting with a letter or digit`,
			`t.yaml:5:12: backends[3].name: duplicate backend name "b" (also backends[2])`,
		},
	},
	{
		name: "algorithm and hash key",
		data: "backends:\n  - {name: a, algorithm: ketama}\n  - {name: b, hash_key: uri}\n  - {name: c, algorithm: hash, hash_key: \"header:\"}\n  - {name: d, algorithm: hash, hash_key: \"cookie:sid\"}\n  - {name: e, algorithm: maglev, hash_key: \"header:X-User\"}\n",
		want: []string{
			`t.yaml:2:26: backends[0].algorithm: invalid value "ketama" (valid: round_robin, weighted_round_robin, least_connections, source_ip_hash, random_two_choices, least_response_time, hash, maglev)`,
			"t.yaml:3:25: backends[1].hash_key: only used with algorithms hash and maglev",
			`t.yaml:4:42: backends[2].hash_key: invalid hash key "header:" (valid: uri, header:NAME, cookie:NAME)`,
		},
	},
	{
		name: "maglev table size",
		data: "backends:\n" +
			"  - {name: a, algorithm: maglev, maglev_table_size: 65536}\n" +
			"  - {name: b, algorithm: maglev, maglev_table_size: 2, servers: [{address: \"h:1\"}, {address: \"h:2\"}]}\n" +
			"  - {name: c, algorithm: maglev, maglev_table_size: 4194319}\n" +
			"  - {name: d, algorithm: hash, maglev_table_size: 65537}\n" +
			"  - {name: e, algorithm: maglev, maglev_table_size: 3, servers: [{address: \"h:1\"}, {address: \"h:2\"}]}\n",
		want: []string{
			"t.yaml:2:53: backends[0].maglev_table_size: must be a prime number larger than the number of servers (0) and at most 4194304, ideally 100 times the servers or more (65537, 655373)",
			"t.yaml:3:53: backends[1].maglev_table_size: must be a prime number larger than the number of servers (2) and at most 4194304, ideally 100 times the servers or more (65537, 655373)",
			"t.yaml:4:53: backends[2].maglev_table_size: must be a prime number larger than the number of servers (0) and at most 4194304, ideally 100 times the servers or more (65537, 655373)",
			"t.yaml:5:51: backends[3].maglev_table_size: only used with algorithm maglev",
		},
	},
	{
		name: "servers",
		data: "backends:\n  - name: b\n    servers:\n" +
			"      - {name: s}\n" +
			"      - {address: \"127.0.0.1:0\"}\n" +
			"      - {address: \":80\"}\n" +
			"      - {address: \"h:1\", weight: 1001}\n" +
			"      - {address: \"h:1\", weight: -1}\n" +
			"      - {name: \"a/b\", address: \"h:2\", state: up}\n" +
			"      - {name: ok, address: \"[2001:db8::1]:443\"}\n",
		want: []string{
			"t.yaml:4:9: backends[0].servers[0].address: is required",
			`t.yaml:5:19: backends[0].servers[1].address: invalid address "127.0.0.1:0": port must be a number from 1 to 65535`,
			`t.yaml:6:19: backends[0].servers[2].address: invalid address ":80": host is required`,
			"t.yaml:7:34: backends[0].servers[3].weight: must be between 0 and 1000",
			`t.yaml:8:9: backends[0].servers[4].name: duplicate server name "h:1" (also backends[0].servers[3])`,
			"t.yaml:8:34: backends[0].servers[4].weight: must be between 0 and 1000",
			`t.yaml:9:16: backends[0].servers[5].name: invalid server name "a/b": must not contain '/', spaces or control characters`,
			`t.yaml:9:46: backends[0].servers[5].state: invalid value "up" (valid: ready, drain, maintenance)`,
		},
	},
	{
		name: "sticky",
		data: "backends:\n  - name: a\n    sticky: {}\n  - name: b\n    sticky: {cookie: \"a=b\"}\n",
		want: []string{
			"t.yaml:3:13: backends[0].sticky.cookie: is required",
			`t.yaml:5:22: backends[1].sticky.cookie: invalid cookie name "a=b"`,
		},
	},
	{
		name: "backend timeouts and pool",
		data: "backends:\n  - name: a\n    timeouts: {connect: 0s, response: -1s}\n    pool: {max_idle: -2, idle_timeout: -5s}\n",
		want: []string{
			"t.yaml:3:25: backends[0].timeouts.connect: must be greater than 0",
			"t.yaml:3:39: backends[0].timeouts.response: must be greater than 0",
			"t.yaml:4:22: backends[0].pool.max_idle: must be -1 (no pooling), 0 (default) or more",
			"t.yaml:4:40: backends[0].pool.idle_timeout: must not be negative",
		},
	},
	// Health checks, outlier detection, retries.
	{
		name: "health check fields",
		data: "backends:\n  - name: b\n    servers: [{address: \"127.0.0.1:9000\"}]\n    health_check: {type: http, interval: 0s, rise: -1, initial: maybe, path: healthz, expect_status: [200, 399-200, abc], expect_body: \"~(\"}\n",
		want: []string{
			"t.yaml:4:42: backends[0].health_check.interval: must be greater than 0",
			"t.yaml:4:52: backends[0].health_check.rise: must be at least 1",
			"t.yaml:4:65: backends[0].health_check.initial: invalid value \"maybe\" (valid: up, down)",
			"t.yaml:4:78: backends[0].health_check.path: must start with / and contain no spaces or control characters",
			"t.yaml:4:108: backends[0].health_check.expect_status[1]: invalid status \"399-200\": want a status (200) or a range (200-399) within 100-599",
			"t.yaml:4:117: backends[0].health_check.expect_status[2]: invalid status \"abc\": want a status (200) or a range (200-399) within 100-599",
			"t.yaml:4:136: backends[0].health_check.expect_body: error parsing regexp: missing closing ): `(`",
		},
	},
	{
		name: "health check fields of another type",
		data: "backends:\n  - name: b\n    servers: [{address: \"127.0.0.1:9000\"}, {address: \"127.0.0.1:9001\", health_check: {type: udp}}]\n    health_check: {type: tcp, path: /x, command: [x]}\n",
		want: []string{
			"t.yaml:3:86: backends[0].servers[1].health_check.send: is required for udp checks (send or send_hex)",
			"t.yaml:4:37: backends[0].health_check.path: not used by tcp checks (used by http)",
			"t.yaml:4:50: backends[0].health_check.command: not used by tcp checks (used by exec)",
		},
	},
	{
		name: "bad hex, icmp port",
		data: "backends:\n  - name: b\n    servers: [{address: \"127.0.0.1:9000\", health_check: {type: icmp, port: 80}}, {address: \"127.0.0.1:9001\", health_check: {type: udp, send_hex: zz}}]\n    health_check: {type: exec, command: [/bin/true]}\n",
		want: []string{
			"t.yaml:3:76: backends[0].servers[0].health_check.port: not used by icmp checks (used by tcp, http, grpc, udp, exec)",
			"t.yaml:3:146: backends[0].servers[1].health_check.send_hex: invalid hex: encoding/hex: invalid byte: U+007A 'z'",
		},
	},
	{
		name: "l4 keys",
		data: backendB + "frontends:\n  - {name: u, mode: udp, listen: [\":53\"], backend: b, tls: {certificates: []}, proxy_protocol: {trusted: [nope]}}\n  - {name: h, listen: [\":80\"], default_backend: b, udp: {per_packet: true}, routes: [{match: {sni: a.test, alpn: [h2]}, backend: b}]}\n",
		want: []string{
			"t.yaml:4:60: frontends[0].tls: not supported on udp frontends",
			"t.yaml:4:96: frontends[0].proxy_protocol: not supported on udp frontends",
			"t.yaml:4:107: frontends[0].proxy_protocol.trusted[0]: invalid source \"nope\": want a CIDR (10.0.0.0/8) or an IP address",
			"t.yaml:5:57: frontends[1].udp: only used on udp frontends",
			"t.yaml:5:100: frontends[1].routes[0].match.sni: only valid on tcp frontends (an http frontend routes on match.host)",
			"t.yaml:5:114: frontends[1].routes[0].match.alpn: only valid on tcp frontends",
		},
	},
	{
		name: "l4 backend keys",
		data: "backends:\n  - {name: b, proxy_protocol: v3, max_connections: -1, queue: {size: -1, timeout: -1s}, servers: [{address: \"127.0.0.1:9000\"}], health_check: {type: icmp, proxy_protocol: v1}}\n",
		want: []string{
			"t.yaml:2:31: backends[0].proxy_protocol: invalid value \"v3\" (valid: v1, v2)",
			"t.yaml:2:52: backends[0].max_connections: must be 0 (no limit) or more",
			"t.yaml:2:70: backends[0].queue.size: must not be negative",
			"t.yaml:2:83: backends[0].queue.timeout: must not be negative",
			"t.yaml:2:172: backends[0].health_check.proxy_protocol: not used by icmp checks (used by tcp, http)",
		},
	},
	{
		name: "exec without command",
		data: "backends:\n  - name: b\n    servers: [{address: \"127.0.0.1:9000\"}]\n    health_check: {type: exec}\n",
		want: []string{"t.yaml:4:19: backends[0].health_check.command: is required for exec checks"},
	},
	{
		name: "outlier detection and retry",
		data: "backends:\n  - name: b\n    servers: [{address: \"127.0.0.1:9000\"}]\n    outlier_detection: {consecutive_failures: -1, base_ejection_time: 10s, max_ejection_time: 1s, max_ejection_percent: 101}\n    retry: {attempts: 0, on_status: [200], budget: {percent: -5}}\n    slow_start: -1s\n",
		want: []string{
			"t.yaml:4:47: backends[0].outlier_detection.consecutive_failures: must be 0 (off) or more",
			"t.yaml:4:95: backends[0].outlier_detection.max_ejection_time: must not be less than base_ejection_time",
			"t.yaml:4:121: backends[0].outlier_detection.max_ejection_percent: must be between 0 and 100",
			"t.yaml:5:23: backends[0].retry.attempts: must be at least 1 (1 means no retries)",
			"t.yaml:5:38: backends[0].retry.on_status[0]: must be a 4xx or 5xx status, got 200",
			"t.yaml:5:62: backends[0].retry.budget.percent: must be between 0 and 100",
			"t.yaml:6:17: backends[0].slow_start: must not be negative",
		},
	},

	// TLS on frontends and backends.
	{
		name: "tls ciphers unknown or insecure",
		data: backendB + "frontends:\n  - name: t\n    mode: tcp\n    listen: [\":0\"]\n    backend: b\n    tls:\n      certificates: [{cert: a.pem, key: a.key}]\n      ciphers: [TLS_RSA_WITH_RC4_128_SHA, ECDHE-RSA-AES128-GCM-SHA256, TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256]\n",
		want: []string{
			`t.yaml:10:17: frontends[0].tls.ciphers[0]: unknown or insecure cipher suite "TLS_RSA_WITH_RC4_128_SHA" (valid: TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA, TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA, TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA, TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384, TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256, TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256)`,
			`t.yaml:10:43: frontends[0].tls.ciphers[1]: unknown or insecure cipher suite "ECDHE-RSA-AES128-GCM-SHA256" (valid: TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA, TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA, TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA, TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384, TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256, TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256)`,
		},
	},
	{
		name: "tls certificates and min_version",
		data: backendB + "frontends:\n  - name: t\n    mode: tcp\n    listen: [\":0\"]\n    backend: b\n    tls:\n      certificates: [{cert: a.pem}, {key: b.key}]\n      min_version: \"1.1\"\n  - {name: u, mode: tcp, listen: [\":0\"], backend: b, tls: {min_version: \"1.3\"}}\n",
		want: []string{
			"t.yaml:9:22: frontends[0].tls.certificates[0].key: is required",
			"t.yaml:9:37: frontends[0].tls.certificates[1].cert: is required",
			`t.yaml:10:20: frontends[0].tls.min_version: invalid value "1.1" (valid: 1.2, 1.3)`,
			"t.yaml:11:59: frontends[1].tls.certificates: at least one certificate is required (or acme)",
		},
	},
	{
		name: "client_auth without client_ca, client_ca without client_auth",
		data: backendB + "frontends:\n  - {name: t, mode: tcp, listen: [\":0\"], backend: b, tls: {certificates: [{cert: a.pem, key: a.key}], client_auth: require}}\n  - {name: u, mode: tcp, listen: [\":0\"], backend: b, tls: {certificates: [{cert: a.pem, key: a.key}], client_ca: ca.pem}}\n  - {name: v, mode: tcp, listen: [\":0\"], backend: b, tls: {certificates: [{cert: a.pem, key: a.key}], client_auth: always, client_ca: ca.pem}}\n",
		want: []string{
			"t.yaml:4:59: frontends[0].tls.client_ca: is required with client_auth require",
			"t.yaml:5:114: frontends[1].tls.client_ca: only used with client_auth optional or require",
			`t.yaml:6:116: frontends[2].tls.client_auth: invalid value "always" (valid: none, optional, require)`,
		},
	},
	{
		name: "http2 on a tcp frontend",
		data: backendB + "frontends:\n  - {name: t, mode: tcp, listen: [\":0\"], backend: b, tls: {certificates: [{cert: a.pem, key: a.key}], http2: false}}\n",
		want: []string{
			"t.yaml:4:110: frontends[0].tls.http2: only used on http frontends",
		},
	},
	{
		name: "acme without directory or domains",
		data: backendB + "frontends:\n  - name: f\n    listen: [\":0\"]\n    default_backend: b\n    tls:\n      acme: {email: admin}\n",
		want: []string{
			"t.yaml:8:13: frontends[0].tls.acme.directory: is required (the ACME directory URL)",
			"t.yaml:8:13: frontends[0].tls.acme.domains: at least one domain is required",
			"t.yaml:8:21: frontends[0].tls.acme.email: must be an email address",
		},
	},
	{
		name: "acme directory, wildcard domain, challenges",
		data: backendB + "frontends:\n  - name: f\n    listen: [\":0\"]\n    default_backend: b\n    tls:\n      acme:\n        directory: ftp://ca.example/dir\n        domains: [\"*.example.com\", example.com, \"bad host\"]\n        challenges: [dns-01]\n        renew_before: -1h\n",
		want: []string{
			`t.yaml:9:20: frontends[0].tls.acme.directory: must be an https URL, not "ftp://ca.example/dir"`,
			"t.yaml:10:19: frontends[0].tls.acme.domains[0]: wildcard names need the dns-01 challenge, which waage does not do",
			`t.yaml:10:49: frontends[0].tls.acme.domains[2]: invalid domain "bad host": want a host name like www.example.com`,
			`t.yaml:11:22: frontends[0].tls.acme.challenges[0]: invalid value "dns-01" (valid: http-01, tls-alpn-01)`,
			"t.yaml:12:23: frontends[0].tls.acme.renew_before: must not be negative",
		},
	},
	{
		name: "acme on a tcp frontend without tls-alpn-01",
		data: backendB + "frontends:\n  - name: t\n    mode: tcp\n    listen: [\":0\"]\n    backend: b\n    tls: {acme: {directory: \"https://ca.example/dir\", domains: [a.example.com], challenges: [http-01]}}\n",
		want: []string{
			"t.yaml:8:93: frontends[0].tls.acme.challenges: a tcp frontend can only answer tls-alpn-01",
		},
	},
	{
		name: "redirect_https on a TLS frontend, h2c with tls",
		data: backendB + "frontends:\n  - name: f\n    listen: [\":0\"]\n    default_backend: b\n    redirect_https: true\n    h2c: true\n    tls: {certificates: [{cert: a.pem, key: a.key}]}\n",
		want: []string{
			"t.yaml:7:21: frontends[0].redirect_https: only on a plaintext frontend (this one terminates TLS)",
			"t.yaml:8:10: frontends[0].h2c: only on a plaintext frontend; with tls, HTTP/2 is offered by ALPN",
		},
	},
	{
		name: "https_port without redirect_https, out of range",
		data: backendB + "frontends:\n  - {name: f, listen: [\":0\"], default_backend: b, https_port: 8443}\n  - {name: g, listen: [\":0\"], default_backend: b, redirect_https: true, https_port: 70000}\n",
		want: []string{
			"t.yaml:4:63: frontends[0].https_port: only used with redirect_https",
			"t.yaml:5:85: frontends[1].https_port: must be a port from 1 to 65535",
		},
	},
	{
		name: "http keys on a tcp frontend",
		data: backendB + "frontends:\n  - {name: t, mode: tcp, listen: [\":0\"], backend: b, redirect_https: true, https_port: 443, h2c: true}\n",
		want: []string{
			"t.yaml:4:70: frontends[0].redirect_https: only used on http frontends",
			"t.yaml:4:88: frontends[0].https_port: only used on http frontends",
			"t.yaml:4:98: frontends[0].h2c: only used on http frontends",
		},
	},
	{
		name: "backend protocol unknown, h2c with tls, cert without key",
		data: "backends:\n  - {name: a, protocol: http3}\n  - {name: b, protocol: h2c, tls: {ca: ca.pem}}\n  - {name: c, protocol: h2, tls: {cert: c.pem}}\n",
		want: []string{
			`t.yaml:2:25: backends[0].protocol: invalid value "http3" (valid: http1, h2, h2c)`,
			"t.yaml:3:35: backends[1].tls: h2c is HTTP/2 without TLS; use protocol h2 with tls",
			"t.yaml:4:34: backends[2].tls: cert and key go together",
		},
	},
	{
		name: "PROXY header to HTTP/2 servers",
		data: "backends:\n  - {name: a, protocol: h2c, proxy_protocol: v2}\n",
		want: []string{
			"t.yaml:2:46: backends[0].proxy_protocol: not with protocol h2c: an HTTP/2 connection carries the streams of many clients, and a PROXY header names one",
		},
	},
	{
		name: "limits and access",
		data: backendB + "frontends:\n  - name: a\n    listen: [\":0\"]\n    default_backend: b\n    limits: {max_connections: -1, packet_rate_per_source: 5, max_header_bytes: 100MB, max_uri_bytes: 8, max_body_bytes: 10XB, request_rate: {rate: 0, key: \"header:\"}}\n    access: {deny: [10.0.0.0/33]}\n    routes:\n      - {backend: b, limits: {max_connections: 5}}\n  - {name: t, mode: tcp, listen: [\":0\"], backend: b, limits: {max_body_bytes: 1KB, packet_rate_per_source: 1}}\n  - {name: u, mode: udp, listen: [\":0\"], backend: b, limits: {max_connections_per_source: 3}, timeouts: {client_header: 5s}}\n  - {name: h, listen: [\":0\"], limits: {header_timeout: 3s}, timeouts: {client_header: 5s}}\n",
		want: []string{
			"t.yaml:7:31: frontends[0].limits.max_connections: must be 0 (no limit) or more",
			"t.yaml:7:59: frontends[0].limits.packet_rate_per_source: not used on http frontends (only udp)",
			"t.yaml:7:80: frontends[0].limits.max_header_bytes: must be between 1KB and 64KB, got 104857600",
			"t.yaml:7:102: frontends[0].limits.max_uri_bytes: must be at least 16 bytes, got 8",
			"t.yaml:7:121: frontends[0].limits.max_body_bytes: expected a size like 32768, 32KB or 100MB, got \"10XB\"",
			"t.yaml:7:148: frontends[0].limits.request_rate.rate: must be 1 or more",
			"t.yaml:7:156: frontends[0].limits.request_rate.key: must be source, header:NAME or cookie:NAME, got \"header:\"",
			"t.yaml:8:21: frontends[0].access.deny[0]: invalid source \"10.0.0.0/33\": want a CIDR (10.0.0.0/8) or an IP address",
			"t.yaml:10:30: frontends[0].routes[0].limits: a route may set only request_rate, min_body_rate and max_body_bytes; the others are the frontend's",
			"t.yaml:11:79: frontends[1].limits.max_body_bytes: only used on http frontends",
			"t.yaml:11:108: frontends[1].limits.packet_rate_per_source: not used on tcp frontends (only udp)",
			"t.yaml:12:91: frontends[2].limits.max_connections_per_source: not used on udp frontends (only http, tcp)",
			"t.yaml:13:56: frontends[3].limits.header_timeout: differs from timeouts.client_header, which is the same setting; set one",
		},
	},
}

func TestParseErrors(t *testing.T) {
	for _, tc := range parseErrorCases {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse("t.yaml", []byte(tc.data), mapEnv(tc.env))
			if cfg != nil {
				t.Errorf("Parse returned a config along with errors")
			}
			var list ErrorList
			if !errors.As(err, &list) {
				t.Fatalf("Parse: got %v, want an ErrorList", err)
			}
			got := strings.Split(err.Error(), "\n")
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

// parseValidCases are edge cases that must stay valid; FuzzParse seeds from them too.
var parseValidCases = []struct {
	name string
	data string
}{
	{name: "admin on localhost without token", data: "admin: {listen: \"localhost:9900\"}\n"},
	{name: "health checks of every type", data: "backends:\n  - name: b\n    health_check: {type: http, path: /healthz, expect_status: [200, \"300-399\"], expect_body: \"~^ok\", headers: {X-Check: waage}, host: h.example, tls: {insecure_skip_verify: true}}\n    servers:\n      - {address: \"127.0.0.1:9000\"}\n      - {address: \"127.0.0.1:9001\", health_check: {type: tcp, send: \"PING\\r\\n\", expect: \"+PONG\"}}\n      - {address: \"127.0.0.1:9002\", health_check: {type: udp, send_hex: \"00 01\", address: 127.0.0.9}}\n      - {address: \"127.0.0.1:9003\", health_check: {type: icmp, initial: down}}\n      - {address: \"127.0.0.1:9004\", health_check: {type: exec, command: [/bin/true]}}\n      - {address: \"127.0.0.1:9005\", health_check: {type: none}}\n"},
	{name: "admin on ::1 without token", data: "admin: {listen: \"[::1]:9900\"}\n"},
	{name: "admin on 127.0.0.0/8 without token", data: "admin: {listen: \"127.1.2.3:9900\"}\n"},
	{name: "admin off loopback with token", data: "admin: {listen: \"0.0.0.0:9900\", token: t}\n"},
	{name: "port 0 listens may repeat", data: backendB + "frontends:\n  - {name: a, listen: [\"127.0.0.1:0\"], default_backend: b}\n  - {name: c, listen: [\"127.0.0.1:0\"], default_backend: b}\n"},
	{name: "same address on tcp and udp", data: backendB + "frontends:\n  - {name: a, mode: tcp, listen: [\":53\"], backend: b}\n  - {name: c, mode: udp, listen: [\":53\"], backend: b}\n"},
	{name: "tcp with routes and default_backend", data: backendB + "frontends:\n  - {name: a, mode: tcp, listen: [\":0\"], routes: [{match: {sni: a.example.com, alpn: [h2]}, backend: b}], default_backend: b}\n"},
	{name: "http frontend without any backend", data: "frontends:\n  - {name: a, listen: [\":0\"]}\n"},
	{name: "backend without servers", data: "backends: [{name: b}]\n"},
	{name: "weight 0 and 1000", data: "backends: [{name: b, servers: [{address: \"h:1\", weight: 0}, {address: \"h:2\", weight: 1000}]}]\n"},
	{name: "quoted scalars convert", data: "backends: [{name: b, servers: [{address: \"h:1\", weight: \"3\", backup: \"true\"}]}]\n"},
	{name: "bool spellings", data: "backends: [{name: b, servers: [{address: \"h:1\", backup: True}, {address: \"h:2\", backup: FALSE}]}]\n"},
	{name: "anchor without alias", data: "log: &l {level: info}\n"},
	{name: "core tags", data: "log: !!map {level: !!str info}\nbackends: !!seq [{name: b, pool: {max_idle: !!int 3}}]\n"},
	{name: "underscore in server host", data: "backends: [{name: b, servers: [{address: \"my_service:80\"}]}]\n"},
	{name: "regex with dollar", data: backendB + "frontends:\n  - {name: a, listen: [\":0\"], routes: [{match: {path_regex: \"^/v1$\"}, backend: b}]}\n"},
	{name: "odd strings", data: backendB + "admin: {listen: \"[::1]:1\", token: \"~\"}\nfrontends:\n  - name: a\n    listen: [\":0\"]\n    routes:\n      - backend: b\n        match:\n          query: {\"<<\": \"$$x\", \"~\": \"a\\nb\", \"${X}\": \"true\", \"\u00e9\": \"null\"}\n          user_agent: \"  lead and trail  \"\n          headers: {X-Empty: \"\"}\n"},
	{name: "every tls key on an http frontend", data: backendB + "frontends:\n  - name: a\n    listen: [\":0\"]\n    default_backend: b\n    tls:\n      certificates: [{cert: a.pem, key: a.key}, {cert: b.pem, key: b.key}]\n      min_version: \"1.3\"\n      ciphers: [TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256]\n      client_auth: optional\n      client_ca: clients.pem\n      http2: false\n      acme: {directory: \"https://acme.example/directory\", email: ops@example.com, domains: [a.example.com, B.Example.com], challenges: [tls-alpn-01, http-01], renew_before: 720h}\n"},
	{name: "acme only, on a tcp frontend with tls-alpn-01", data: backendB + "frontends:\n  - {name: t, mode: tcp, listen: [\":0\"], backend: b, tls: {acme: {directory: \"https://acme.example/directory\", domains: [a.example.com], challenges: [tls-alpn-01]}}}\n  - {name: u, mode: tcp, listen: [\":0\"], backend: b, tls: {acme: {directory: \"https://acme.example/directory\", domains: [a.example.com]}}}\n"},
	{name: "client_auth none with no client_ca", data: backendB + "frontends:\n  - {name: t, mode: tcp, listen: [\":0\"], backend: b, tls: {certificates: [{cert: a.pem, key: a.key}], client_auth: none}}\n"},
	{name: "redirect_https with https_port, h2c on plaintext", data: backendB + "frontends:\n  - {name: a, listen: [\":0\"], default_backend: b, redirect_https: true, https_port: 8443}\n  - {name: c, listen: [\":0\"], default_backend: b, h2c: true}\n"},
	{name: "limits and access of every mode", data: backendB + "frontends:\n  - name: a\n    listen: [\":0\"]\n    default_backend: b\n    limits: {max_connections: 20000, max_connections_per_source: 100, connection_rate_per_source: 200, request_rate: {rate: 100, per: 1s, burst: 200, key: source}, header_timeout: 10s, min_body_rate: 1024, max_header_bytes: 32KB, max_uri_bytes: 8192, max_body_bytes: 100MB}\n    access: {allow: [10.0.0.0/8, \"::1\"], deny: [203.0.113.0/24]}\n    routes:\n      - {backend: b, limits: {request_rate: {rate: 5, key: \"header:X-Api-Key\"}, max_body_bytes: 1GiB, min_body_rate: 1k}}\n      - {backend: b, limits: {request_rate: {rate: 5, key: \"cookie:session\"}}}\n  - {name: t, mode: tcp, listen: [\":0\"], backend: b, limits: {max_connections: 10, max_connections_per_source: 2, connection_rate_per_source: 5}, access: {deny: [127.0.0.2]}}\n  - {name: u, mode: udp, listen: [\":0\"], backend: b, limits: {packet_rate_per_source: 1000}, access: {allow: [127.0.0.0/8]}}\n"},
	{name: "redirects and rewrites", data: backendB + "frontends:\n  - name: a\n    listen: [\":0\"]\n    routes:\n      - {match: {path_prefix: /old/}, redirect: {scheme: https, host: www.example.com, port: 8443, path: /new, status: 301}}\n      - {match: {path_prefix: /shop}, redirect: {replace_prefix: /store}}\n      - {match: {path: /x}, redirect: {host: \"::1\", status: 308}, limits: {max_body_bytes: 1k}}\n      - {match: {path_prefix: /api}, rewrite: {path: \"/v2/fixed%20path;x=1\"}, backend: b}\n      - {match: {path_prefix: /api/}, rewrite: {replace_prefix: /}, backend: b, request_headers: {set: {Host: internal}}}\n"},
	{name: "backend protocols", data: "backends:\n  - {name: a, protocol: h2}\n  - {name: b, protocol: h2c}\n  - {name: c, protocol: http1, tls: {ca: ca.pem, cert: c.pem, key: c.key, server_name: internal.example}}\n  - {name: d, protocol: h2, tls: {insecure_skip_verify: true}}\n"},
}

func TestParseAccepts(t *testing.T) {
	for _, tc := range parseValidCases {
		t.Run(tc.name, func(t *testing.T) {
			mustParse(t, tc.data)
		})
	}
}

func TestEnvExpansion(t *testing.T) {
	env := mapEnv(map[string]string{"TOKEN": "s3cret", "EMPTY": "", "HOST": "10.0.0.1", "PORT": "9900", "SELF": "${TOKEN}"})
	for _, tc := range []struct {
		name    string
		in      string
		want    string
		wantErr string
	}{
		{name: "plain", in: "abc", want: "abc"},
		{name: "variable", in: "${TOKEN}", want: "s3cret"},
		{name: "inside text", in: "Bearer ${TOKEN}!", want: "Bearer s3cret!"},
		{name: "two variables", in: "${HOST}:${PORT}", want: "10.0.0.1:9900"},
		{name: "default when unset", in: "${NOPE:-127.0.0.1:9900}", want: "127.0.0.1:9900"},
		{name: "default when empty", in: "${EMPTY:-x}", want: "x"},
		{name: "empty default", in: "${NOPE:-}", want: ""},
		{name: "set but empty without default", in: "${EMPTY}", want: ""},
		{name: "set value wins over default", in: "${TOKEN:-x}", want: "s3cret"},
		{name: "double dollar", in: "$$", want: "$"},
		{name: "escaped reference", in: "$${TOKEN}", want: "${TOKEN}"},
		{name: "lone dollar", in: "a$b", want: "a$b"},
		{name: "trailing dollar", in: "^/v1$", want: "^/v1$"},
		{name: "dollar before variable", in: "$$$${TOKEN}", want: "$${TOKEN}"},
		{name: "value is not expanded again", in: "${SELF}", want: "${TOKEN}"},
		{name: "unset", in: "x${NOPE}", wantErr: "environment variable NOPE is not set (write ${NOPE:-default} to give a default)"},
		{name: "unterminated", in: "${TOKEN", wantErr: `unterminated "${TOKEN" (close it with }, or write $$ for a literal $)`},
		{name: "empty name", in: "${}", wantErr: "invalid variable reference ${}: want ${NAME} or ${NAME:-default}"},
		{name: "shell default without colon", in: "${A-b}", wantErr: "invalid variable reference ${A-b}: want ${NAME} or ${NAME:-default}"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := expandEnv(tc.in, env)
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("expandEnv(%q) error = %v, want %q", tc.in, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("expandEnv(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
			}
		})
	}
}

func TestEnvInConfig(t *testing.T) {
	env := mapEnv(map[string]string{"TOKEN": "s3cret", "W": "7", "BACKUP": "true", "T": "3s"})
	cfg, err := Parse("t.yaml", []byte(`
admin: {listen: "${ADMIN:-0.0.0.0:9900}", token: "${TOKEN}"}
backends:
  - name: b
    timeouts: {connect: "${T}"}
    servers: [{address: "h:1", weight: "${W}", backup: "${BACKUP}", name: "$$x"}]
`), env)
	if err != nil {
		t.Fatal(err)
	}
	s := cfg.Backends[0].Servers[0]
	if cfg.Admin.Listen != "0.0.0.0:9900" || cfg.Admin.Token != "s3cret" {
		t.Errorf("admin = %+v", cfg.Admin)
	}
	if s.WeightOr(1) != 7 || !s.Backup || s.Name != "$x" || cfg.Backends[0].Timeouts.Connect != sec(3) {
		t.Errorf("server = %+v, timeouts = %+v", s, cfg.Backends[0].Timeouts)
	}
}

func mapEnv(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := m[k]
		return v, ok
	}
}

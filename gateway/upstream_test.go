package gateway

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
)

func TestLocalPath(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{"/", true},
		{"/app/page?x=1&y=%2F", true},
		{"/a//b", true},
		{"", false},
		{"app", false},
		{"//evil.example/", false},
		{"/\\evil.example/", false},
		{"/a\\b", false},
		{"https://evil.example/", false},
		{"/\t/evil.example", false},
		{"/\n/evil.example", false},
		{"/a\x7f", false},
		{"javascript:alert(1)", false},
	}
	for _, tt := range tests {
		if got := localPath(tt.in); got != tt.want {
			t.Errorf("localPath(%q) = %v; want %v", tt.in, got, tt.want)
		}
	}
}

func TestLoginURL(t *testing.T) {
	tests := []struct {
		in      string
		expired bool
		want    string
	}{
		{"/app/page?x=1&y=2", false, "/gatehouse/login?next=%2Fapp%2Fpage%3Fx%3D1%26y%3D2"},
		{"/", true, "/gatehouse/login?next=%2F&reason=expired"},
		{"//evil.example/", false, "/gatehouse/login?next=%2Fgatehouse%2Faccount"},
		{"", false, "/gatehouse/login?next=%2Fgatehouse%2Faccount"},
	}
	for _, tt := range tests {
		if got := loginURL(tt.in, tt.expired); got != tt.want {
			t.Errorf("loginURL(%q) = %q; want %q", tt.in, got, tt.want)
		}
	}
}

func TestCrossSite(t *testing.T) {
	tests := []struct {
		site, origin string
		want         bool
	}{
		{"", "", false},            // not a browser
		{"same-origin", "", false}, // the login page
		{"none", "", false},        // typed in
		{"same-site", "", true},    // another port or subdomain
		{"cross-site", "https://gh.test", true},
		{"", "https://gh.test", false},              // old browser, same origin
		{"", "https://GH.test", false},              // ASCII case ignored
		{"", "https://evil.test", true},             // old browser, another site
		{"", "null", true},                          // sandboxed or file: page
		{"same-origin", "https://evil.test", false}, // Fetch Metadata wins
	}
	for _, tt := range tests {
		r, _ := http.NewRequest("POST", "https://gh.test/api2/json/access/ticket", nil)
		if tt.site != "" {
			r.Header.Set("Sec-Fetch-Site", tt.site)
		}
		if tt.origin != "" {
			r.Header.Set("Origin", tt.origin)
		}
		if got := crossSite(r); got != tt.want {
			t.Errorf("crossSite(Sec-Fetch-Site %q, Origin %q) = %v; want %v", tt.site, tt.origin, got, tt.want)
		}
	}
}

func TestSameOrigin(t *testing.T) {
	tests := []struct {
		name         string
		h            http.Header
		scheme, host string
		want         bool
	}{
		{"fetch same-origin", http.Header{"Sec-Fetch-Site": {"same-origin"}}, "https", "gh.example", true},
		{"fetch same-site", http.Header{"Sec-Fetch-Site": {"same-site"}}, "https", "gh.example", false},
		{"fetch cross-site, own origin", http.Header{"Sec-Fetch-Site": {"cross-site"}, "Origin": {"https://gh.example"}}, "https", "gh.example", false}, // Fetch Metadata wins
		{"fetch same-site, own origin", http.Header{"Sec-Fetch-Site": {"same-site"}, "Origin": {"https://gh.example"}}, "https", "gh.example", false},
		{"fetch none", http.Header{"Sec-Fetch-Site": {"none"}}, "https", "gh.example", false},
		{"origin equal", http.Header{"Origin": {"https://gh.example:8007"}}, "https", "gh.example:8007", true},
		{"origin case", http.Header{"Origin": {"https://GH.example"}}, "https", "gh.example", true},
		{"origin other port", http.Header{"Origin": {"https://gh.example:8443"}}, "https", "gh.example:8007", false},
		{"origin http", http.Header{"Origin": {"http://gh.example"}}, "https", "gh.example", false},
		{"origin other host", http.Header{"Origin": {"https://evil.example"}}, "https", "gh.example", false},
		{"origin suffix", http.Header{"Origin": {"https://gh.example.evil.example"}}, "https", "gh.example", false},
		{"origin null", http.Header{"Origin": {"null"}}, "https", "gh.example", false},
		{"no headers", http.Header{}, "https", "gh.example", false},
		{"no host", http.Header{"Origin": {"https://"}}, "https", "", false},
		{"forwarded http", http.Header{"Origin": {"http://127.0.0.1:8080"}}, "http", "127.0.0.1:8080", true},
	}
	for _, tt := range tests {
		if got := sameOrigin(tt.h, tt.scheme, tt.host); got != tt.want {
			t.Errorf("%s: sameOrigin(%v, %q, %q) = %v; want %v", tt.name, tt.h, tt.scheme, tt.host, got, tt.want)
		}
	}
}

func TestWebsocket(t *testing.T) {
	tests := []struct {
		name string
		h    http.Header
		want bool
	}{
		{"plain GET", http.Header{"Origin": {"https://evil.example"}, "Sec-Fetch-Site": {"cross-site"}}, false},
		{"Upgrade", http.Header{"Upgrade": {"websocket"}}, true},
		{"any Upgrade", http.Header{"Upgrade": {"h2c"}}, true},
		{"key, as nginx's auth_request passes it", http.Header{"Sec-Websocket-Key": {"dGhlIHNhbXBsZSBub25jZQ=="}}, true},
		{"version", http.Header{"Sec-Websocket-Version": {"13"}}, true},
		{"fetch mode", http.Header{"Sec-Fetch-Mode": {"websocket"}}, true},
		{"fetch mode, case", http.Header{"Sec-Fetch-Mode": {"WebSocket"}}, true},
		{"fetch mode navigate", http.Header{"Sec-Fetch-Mode": {"navigate"}}, false},
	}
	for _, tt := range tests {
		if got := websocket(tt.h); got != tt.want {
			t.Errorf("%s: websocket(%v) = %v; want %v", tt.name, tt.h, got, tt.want)
		}
	}
}

func TestDropClientClaims(t *testing.T) {
	h := http.Header{
		"X_gatehouse_user": {"root@pam"}, "X-Forwarded_for": {"192.0.2.1"}, "Accept_language": {"en"},
		"Forwarded": {"for=192.0.2.1"}, "X-Real-Ip": {"192.0.2.1"}, "X-Forwarded-Port": {"80"},
		"X-Forwarded-Uri": {"/a"}, "X-Forwarded-Prefix": {"/a"}, "X-Forwarded-Server": {"e"},
		"X-Forwarded-Method": {"DELETE"}, "X-Original-Uri": {"/a"}, "X-Original-Method": {"DELETE"},
		"X-Http-Method-Override": {"DELETE"}, "X-Http-Method": {"DELETE"}, "X-Method-Override": {"DELETE"},
		"x-http-method-override": {"DELETE"}, // not canonical: a raw map entry
		"X-Forwarded-For":        {"127.0.0.1"}, "X-Forwarded-Host": {"gh.example"}, "X-Forwarded-Proto": {"https"},
		"X-Gatehouse-User": {"alice@pbs"}, "Accept-Language": {"en"}, "Cookie": {"a_b=1"},
	}
	dropClientClaims(h)
	want := []string{"Accept-Language", "Cookie", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "X-Gatehouse-User"}
	var got []string
	for k := range h {
		got = append(got, k)
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("dropClientClaims left %q; want %q", got, want)
	}
}

func TestHostOnlyDoors(t *testing.T) {
	tests := []struct {
		in   []string
		want map[door]bool
		err  string
	}{
		{nil, map[door]bool{}, ""},
		{[]string{"upstream", "auth"}, map[door]bool{doorUpstream: true, doorAuth: true}, ""},
		{[]string{"pages"}, map[door]bool{doorPage: true}, ""},
		{[]string{"upstream", "api"}, nil, `reading host-cookie-only: "api" is not upstream, auth or pages`},
	}
	for _, tt := range tests {
		got, err := hostOnlyDoors(tt.in)
		errText := ""
		if err != nil {
			errText = err.Error()
		}
		if fmt.Sprint(got) != fmt.Sprint(tt.want) || errText != tt.err {
			t.Errorf("hostOnlyDoors(%q) = %v, %v; want %v, %q", tt.in, got, err, tt.want, tt.err)
		}
	}
	if got := splitList(" upstream, ,auth ,"); !slices.Equal(got, []string{"upstream", "auth"}) {
		t.Errorf("splitList(\" upstream, ,auth ,\") = %q; want [upstream auth]", got)
	}
	if got := splitList(""); got != nil {
		t.Errorf("splitList(\"\") = %q; want none", got)
	}
}

func TestBrowserNavigation(t *testing.T) {
	html := "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
	tests := []struct {
		method, accept string
		want           bool
	}{
		{"GET", html, true},
		{"HEAD", "TEXT/HTML", true},
		{"POST", html, false},
		{"GET", "application/json", false},
		{"GET", "", false},
		{"GET", "*/*", false},
	}
	for _, tt := range tests {
		h := http.Header{}
		if tt.accept != "" {
			h.Set("Accept", tt.accept)
		}
		if got := browserNavigation(tt.method, h); got != tt.want {
			t.Errorf("browserNavigation(%s, %q) = %v; want %v", tt.method, tt.accept, got, tt.want)
		}
	}
}

func TestStripCookies(t *testing.T) {
	names := []string{"__Host-PBSAuthCookie", "PBSAuthCookie"}
	tests := []struct{ in, want string }{
		{"PBSAuthCookie=PBS:a; theme=dark", "theme=dark"},
		{"a=1; __Host-PBSAuthCookie=PBS%3Ax;b=\"q v\"", "a=1; b=\"q v\""},
		{" PBSAuthCookie =x ; sid=7", "sid=7"},
		{"PBSAuthCookie=x", ""},
		{"XPBSAuthCookie=x; PBSAuthCookieX=y", "XPBSAuthCookie=x; PBSAuthCookieX=y"},
		{"pbsauthcookie=x", "pbsauthcookie=x"}, // net/http names are case-sensitive: not a ticket
		{";;", ""},
	}
	for _, tt := range tests {
		if got := stripCookies(tt.in, names...); got != tt.want {
			t.Errorf("stripCookies(%q) = %q; want %q", tt.in, got, tt.want)
		}
	}
}

// FuzzLocalPath: a path localPath accepts stays on this origin when resolved as a browser
// would resolve a Location, and loginURL carries it (or "/") through the query intact.
func FuzzLocalPath(f *testing.F) {
	for _, s := range []string{"/", "/app?x=1", "//evil.example", "/\\evil", "/\t/x", "https://x/", "/%2F%2Fevil"} {
		f.Add(s)
	}
	base, _ := url.Parse("https://gh.example/gatehouse/login")
	f.Fuzz(func(t *testing.T, next string) {
		ok := localPath(next)
		if ok {
			if strings.HasPrefix(next, "//") || strings.HasPrefix(next, "/\\") || strings.ContainsAny(next, "\\\t\r\n") {
				t.Fatalf("localPath(%q) = true", next)
			}
			if u, err := base.Parse(next); err == nil && (u.Host != "gh.example" || u.Scheme != "https") {
				t.Fatalf("localPath(%q) = true but it resolves to %s", next, u)
			}
		}
		u, err := url.Parse(loginURL(next, false))
		if err != nil {
			t.Fatalf("loginURL(%q) does not parse: %v", next, err)
		}
		want := AccountPath
		if ok {
			want = next
		}
		if got := u.Query().Get("next"); u.Path != LoginPath || got != want {
			t.Fatalf("loginURL(%q) = %s carries %q; want %q", next, u, got, want)
		}
	})
}

// FuzzStripCookies: no ticket cookie survives, and every kept cookie was in the input, in
// order.
func FuzzStripCookies(f *testing.F) {
	f.Add("PBSAuthCookie=PBS:a; theme=dark")
	f.Add(" __Host-PBSAuthCookie = x;;a=1")
	f.Fuzz(func(t *testing.T, in string) {
		out := stripCookies(in, "__Host-PBSAuthCookie", "PBSAuthCookie")
		r := &http.Request{Header: http.Header{"Cookie": {out}}}
		for _, c := range r.Cookies() {
			if c.Name == "PBSAuthCookie" || c.Name == "__Host-PBSAuthCookie" {
				t.Fatalf("stripCookies(%q) = %q keeps ticket cookie %s", in, out, c.Name)
			}
		}
		rest := in
		for kept := range strings.SplitSeq(out, "; ") {
			if kept == "" {
				continue
			}
			i := strings.Index(rest, kept)
			if i < 0 {
				t.Fatalf("stripCookies(%q) = %q: %q is not in the input in order", in, out, kept)
			}
			rest = rest[i+len(kept):]
		}
	})
}

// BenchmarkDropClientClaims: the cost per proxied request of dropClientClaims on a browser's
// usual headers (none of them dropped), after proxyd's own have been set.
func BenchmarkDropClientClaims(b *testing.B) {
	base := http.Header{
		"Accept": {"text/html"}, "Accept-Encoding": {"gzip, deflate, br"}, "Accept-Language": {"en-US,en;q=0.9"},
		"Cookie": {"theme=dark"}, "User-Agent": {"Mozilla/5.0"}, "Sec-Fetch-Site": {"same-origin"},
		"Sec-Fetch-Mode": {"navigate"}, "Sec-Fetch-Dest": {"document"}, "Referer": {"https://gh.example/"},
		"X-Forwarded-For": {"192.0.2.1"}, "X-Forwarded-Host": {"gh.example"}, "X-Forwarded-Proto": {"https"},
		"X-Gatehouse-User": {"alice@pbs"}, "X-Gatehouse-Authid": {"alice@pbs"},
	}
	h := base.Clone()
	b.ReportAllocs()
	for b.Loop() {
		dropClientClaims(h)
	}
	if len(h) != len(base) {
		b.Fatalf("dropped %d headers of a browser's usual ones", len(base)-len(h))
	}
}

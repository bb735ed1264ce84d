package forward

import (
	"net/http"
	"strings"
	"testing"
)

func TestStrip(t *testing.T) {
	h := http.Header{
		"X-Gatehouse-Authid": {"root@pam"},
		"x-gatehouse-rhost":  {"1.2.3.4"}, // not canonical: a raw map entry
		"X-Gatehousex":       {"kept"},
		"Authorization":      {"kept"},
		// A CGI-style application reads each of these as HTTP_X_GATEHOUSE_USER.
		"X_gatehouse_user":   {"root@pam"}, // as net/http canonicalizes X_Gatehouse_User
		"X-Gatehouse_user":   {"root@pam"},
		"X_gatehouse-User":   {"root@pam"},
		"x_GATEHOUSE_authid": {"root@pam"},
	}
	h.Set(Failure, "x")
	Strip(h)
	if len(h) != 2 || h.Get("Authorization") != "kept" || h.Get("X-Gatehousex") != "kept" {
		t.Errorf("Strip left %v; want only Authorization and X-Gatehousex", h)
	}
}

func TestInternal(t *testing.T) {
	for _, tt := range []struct {
		name string
		want bool
	}{
		{"X-Gatehouse-User", true},
		{"X_Gatehouse_User", true},
		{"X-Gatehouse_", true},
		{"x_gatehouse-", true},
		{"X-Gatehouse", false},
		{"X-Gatehousex", false},
		{"X-Gatehouse\r", false}, // '\r'|0x20 is '-': case folding must not be a bit trick
		{"X-Gatehouse\x0d-User", false},
		{"Y-Gatehouse-User", false},
		{"X-Gatehouse.User", false},
		{"", false},
	} {
		if got := internal(tt.name); got != tt.want {
			t.Errorf("internal(%q) = %v; want %v", tt.name, got, tt.want)
		}
	}
}

// FuzzInternal checks internal against a plain reference: the name's first len(prefix) bytes,
// '_' turned into '-', equal prefix with ASCII case ignored.
func FuzzInternal(f *testing.F) {
	for _, s := range []string{"X-Gatehouse-User", "X_Gatehouse_User", "x_gATEHOUSE-", "X-Gatehouse\r", "X-Gatehous", "X\x00Gatehouse-"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		want := len(name) >= len(prefix) && strings.EqualFold(strings.ReplaceAll(name[:len(prefix)], "_", "-"), prefix)
		if got := internal(name); got != want {
			t.Fatalf("internal(%q) = %v; want %v", name, got, want)
		}
	})
}

// BenchmarkStrip: the cost per request of Strip on a browser's usual headers, none internal.
func BenchmarkStrip(b *testing.B) {
	h := http.Header{
		"Accept": {"text/html"}, "Accept-Encoding": {"gzip, deflate, br"}, "Accept-Language": {"en-US,en;q=0.9"},
		"Cookie": {"theme=dark"}, "User-Agent": {"Mozilla/5.0"}, "Sec-Fetch-Site": {"same-origin"},
		"Sec-Fetch-Mode": {"navigate"}, "Sec-Fetch-Dest": {"document"}, "Referer": {"https://gh.example/"},
		"X-Forwarded-For": {"192.0.2.1"}, "X-Forwarded-Host": {"gh.example"}, "X-Forwarded-Proto": {"https"},
	}
	n := len(h)
	b.ReportAllocs()
	for b.Loop() {
		Strip(h)
	}
	if len(h) != n {
		b.Fatalf("Strip removed %d of a browser's usual headers", n-len(h))
	}
}

package credential

import (
	"net/http"
	"strings"
	"testing"
)

func TestParseTokenHeader(t *testing.T) {
	tests := []struct {
		in, id, secret, reason string
	}{
		{"PBSAPIToken=alice@pbs!ci:6f1c1e1e-8a4b-4c57-9a7e-0c9a1e7d2b11", "alice@pbs!ci", "6f1c1e1e-8a4b-4c57-9a7e-0c9a1e7d2b11", ""},
		{"PBSAPIToken alice@pbs!ci:s:with:colons", "alice@pbs!ci", "s:with:colons", ""},
		{"PVEAPIToken=alice@pbs!ci=secret", "", "", "unsupported authorization scheme"},
		{"PBSAPITokenalice@pbs!ci:x", "", "", "unsupported authorization scheme"},
		{"Basic YWxpY2U6eA==", "", "", "unsupported authorization scheme"},
		{"PBSAPIToken=alice@pbs!ci", "", "", "malformed API token header"},
		{"PBSAPIToken=alice@pbs!ci:", "", "", "malformed API token header"},
		{"PBSAPIToken=alice@pbs:x", "", "", "malformed API token id"},
		{"PBSAPIToken=", "", "", "malformed API token header"},
	}
	for _, tt := range tests {
		_, id, secret, reason := ParseTokenHeader("PBSAPIToken", tt.in)
		if id != tt.id || secret != tt.secret || reason != tt.reason {
			t.Errorf("ParseTokenHeader(%q) = %q, %q, %q; want %q, %q, %q", tt.in, id, secret, reason, tt.id, tt.secret, tt.reason)
		}
	}
}

func TestDecode(t *testing.T) {
	raw := "PBS:alice@pbs:6B043829::SyXt+/x"
	for in, want := range map[string]string{
		raw: raw,
		"PBS%3Aalice%40pbs%3A6B043829%3A%3ASyXt%2B%2Fx": raw,
		"PBS%3Abad%zz": "PBS%3Abad%zz", // not decodable: left for the verifier to refuse
		"garbage":      "garbage",
	} {
		if got := Decode("PBS", in); got != want {
			t.Errorf("Decode(%q) = %q; want %q", in, got, want)
		}
	}
}

// TestCookieRoundTrip: a ticket of a user whose name holds bytes a cookie value cannot carry
// travels percent-encoded and comes back whole through net/http's cookie parsing; an ordinary
// ticket travels as it is.
func TestCookieRoundTrip(t *testing.T) {
	c := &Checker{o: Options{Prefix: "PBS"}}
	for _, tk := range []string{
		"PBS:alice@pbs:6B043829::SyXt+/x",
		`PBS:t!n"a<b>@pbs:6B043829::SyXt+/x`,
		"PBS:semi;colon,comma\\back j\u00fcrgen@pbs:6B043829::SyXt+/x",
	} {
		header := (&http.Cookie{Name: "__Host-PBSAuthCookie", Value: Encode(tk)}).String()
		r := &http.Request{Header: http.Header{"Cookie": {header}}}
		if got := c.TicketCookie(r, "__Host-PBSAuthCookie", "PBSAuthCookie"); got.Value != tk || got.Name != "__Host-PBSAuthCookie" {
			t.Errorf("ticket %q as cookie %q came back as %+v", tk, header, got)
		}
		if cookieSafe(tk) != (Encode(tk) == tk) {
			t.Errorf("ticket %q: cookie value %q", tk, Encode(tk))
		}
	}
}

// TestTicketCookieOrder: the names are tried in order and an empty cookie counts as none.
func TestTicketCookieOrder(t *testing.T) {
	c := &Checker{o: Options{Prefix: "PBS"}}
	for _, tt := range []struct {
		name, header string
		names        []string
		want         Cookie
	}{
		{"host first", "PBSAuthCookie=PBS:b; __Host-PBSAuthCookie=PBS:a", []string{"__Host-PBSAuthCookie", "PBSAuthCookie"}, Cookie{"__Host-PBSAuthCookie", "PBS:a"}},
		{"empty host cookie", "__Host-PBSAuthCookie=; PBSAuthCookie=PBS:b", []string{"__Host-PBSAuthCookie", "PBSAuthCookie"}, Cookie{"PBSAuthCookie", "PBS:b"}},
		{"legacy not allowed", "PBSAuthCookie=PBS:b", []string{"__Host-PBSAuthCookie"}, Cookie{}},
		{"none", "theme=dark", []string{"__Host-PBSAuthCookie", "PBSAuthCookie"}, Cookie{}},
	} {
		r := &http.Request{Header: http.Header{"Cookie": {tt.header}}}
		if got := c.TicketCookie(r, tt.names...); got != tt.want {
			t.Errorf("%s: TicketCookie(%q, %v) = %+v; want %+v", tt.name, tt.header, tt.names, got, tt.want)
		}
	}
}

func FuzzParseTokenHeader(f *testing.F) {
	f.Add("PBSAPIToken=alice@pbs!ci:secret")
	f.Add("PBSAPIToken alice@pbs!ci:a:b")
	f.Add("PBSAPIToken=:")
	f.Fuzz(func(t *testing.T, in string) {
		a, id, secret, reason := ParseTokenHeader("PBSAPIToken", in)
		if reason != "" {
			if id != "" || secret != "" {
				t.Fatalf("ParseTokenHeader(%q) failed (%s) but returned %q, %q", in, reason, id, secret)
			}
			return
		}
		if a.String() != id || !a.IsToken() || secret == "" || strings.Contains(id, ":") {
			t.Fatalf("ParseTokenHeader(%q) = %v, %q, %q", in, a, id, secret)
		}
		if in != "PBSAPIToken="+id+":"+secret && in != "PBSAPIToken "+id+":"+secret {
			t.Fatalf("ParseTokenHeader(%q) = %q, %q: does not rebuild the input", in, id, secret)
		}
	})
}

// FuzzDecode: Decode changes only what looks like an encoded ticket, and Encode's output
// always decodes back to its input.
func FuzzDecode(f *testing.F) {
	f.Add("PBS%3Aalice%40pbs%3A6B043829%3A%3Ax")
	f.Add("PBS:a:b::c")
	f.Add(`PBS:a"b;c@pbs:1::x`)
	f.Fuzz(func(t *testing.T, in string) {
		out := Decode("PBS", in)
		if out != in && !strings.HasPrefix(in, "PBS%3A") {
			t.Fatalf("Decode(%q) = %q: changed a value that is not an encoded ticket", in, out)
		}
		if strings.HasPrefix(in, "PBS:") {
			if enc := Encode(in); Decode("PBS", enc) != in || !cookieSafe(enc) {
				t.Fatalf("Encode(%q) = %q does not decode back or is no cookie value", in, enc)
			}
		}
	})
}

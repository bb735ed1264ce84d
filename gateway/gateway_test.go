package gateway

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
		_, id, secret, reason := parseTokenHeader("PBSAPIToken", tt.in)
		if id != tt.id || secret != tt.secret || reason != tt.reason {
			t.Errorf("parseTokenHeader(%q) = %q, %q, %q; want %q, %q, %q", tt.in, id, secret, reason, tt.id, tt.secret, tt.reason)
		}
	}
}

func TestDecodeCookie(t *testing.T) {
	raw := "PBS:alice@pbs:6B043829::SyXt+/x"
	for in, want := range map[string]string{
		raw: raw,
		"PBS%3Aalice%40pbs%3A6B043829%3A%3ASyXt%2B%2Fx": raw,
		"PBS%3Abad%zz": "PBS%3Abad%zz", // not decodable: left for the verifier to refuse
		"garbage":      "garbage",
	} {
		if got := decodeCookie("PBS", in); got != want {
			t.Errorf("decodeCookie(%q) = %q; want %q", in, got, want)
		}
	}
}

func FuzzParseTokenHeader(f *testing.F) {
	f.Add("PBSAPIToken=alice@pbs!ci:secret")
	f.Add("PBSAPIToken alice@pbs!ci:a:b")
	f.Add("PBSAPIToken=:")
	f.Fuzz(func(t *testing.T, in string) {
		a, id, secret, reason := parseTokenHeader("PBSAPIToken", in)
		if reason != "" {
			if id != "" || secret != "" {
				t.Fatalf("parseTokenHeader(%q) failed (%s) but returned %q, %q", in, reason, id, secret)
			}
			return
		}
		if a.String() != id || !a.IsToken() || secret == "" || strings.Contains(id, ":") {
			t.Fatalf("parseTokenHeader(%q) = %v, %q, %q", in, a, id, secret)
		}
		if in != "PBSAPIToken="+id+":"+secret && in != "PBSAPIToken "+id+":"+secret {
			t.Fatalf("parseTokenHeader(%q) = %q, %q: does not rebuild the input", in, id, secret)
		}
	})
}

func FuzzDecodeCookie(f *testing.F) {
	f.Add("PBS%3Aalice%40pbs%3A6B043829%3A%3Ax")
	f.Add("PBS:a:b::c")
	f.Fuzz(func(t *testing.T, in string) {
		out := decodeCookie("PBS", in)
		if out != in && !strings.HasPrefix(in, "PBS%3A") {
			t.Fatalf("decodeCookie(%q) = %q: changed a value that is not an encoded ticket", in, out)
		}
	})
}

// TestTicketCookieRoundTrip: a ticket of a user whose name holds bytes a cookie value cannot
// carry travels percent-encoded and comes back whole; an ordinary ticket travels as it is.
func TestTicketCookieRoundTrip(t *testing.T) {
	s := &Server{o: Options{Prefix: "PBS"}, cookie: "__Host-PBSAuthCookie", legacy: "PBSAuthCookie"}
	for _, tk := range []string{
		"PBS:alice@pbs:6B043829::SyXt+/x",
		`PBS:t!n"a<b>@pbs:6B043829::SyXt+/x`,
		"PBS:semi;colon,comma\\back j\u00fcrgen@pbs:6B043829::SyXt+/x",
	} {
		ck := s.ticketCookieFor(s.cookie, tk)
		header := ck.String()
		r := &http.Request{Header: http.Header{"Cookie": {strings.SplitN(header, ";", 2)[0]}}}
		if got := s.ticketCookie(r); got.value != tk || got.name != s.cookie {
			t.Errorf("ticket %q as cookie %q came back as %q", tk, header, got.value)
		}
		if cookieSafe(tk) != (ck.Value == tk) {
			t.Errorf("ticket %q: cookie value %q", tk, ck.Value)
		}
	}
}

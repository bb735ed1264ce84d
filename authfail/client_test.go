package authfail

import (
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"testing"
)

func TestClientAddr(t *testing.T) {
	trusted, err := ParseTrusted("127.0.0.1, ::1, 10.0.0.0/8, fd00::/8")
	if err != nil {
		t.Fatal(err)
	}
	const proxy = "127.0.0.1:40000"
	tests := []struct {
		name    string
		remote  string
		xff     []string
		trusted []netip.Prefix
		want    string // "" = not ok
	}{
		{"no XFF", "203.0.113.7:5555", nil, trusted, "203.0.113.7:5555"},
		{"untrusted peer: XFF ignored", "203.0.113.7:5555", []string{"198.51.100.1"}, trusted, "203.0.113.7:5555"},
		{"no trusted proxies: XFF ignored", proxy, []string{"198.51.100.1"}, nil, proxy},
		{"trusted peer, no XFF", proxy, nil, trusted, proxy},
		{"trusted peer, one hop", proxy, []string{"198.51.100.1"}, trusted, "198.51.100.1:0"},
		{"spoofed entries left of the client ignored", proxy, []string{"192.0.2.66, 198.51.100.1, 10.0.0.2"}, trusted, "198.51.100.1:0"},
		{"several header lines are one list", proxy, []string{"192.0.2.66", "198.51.100.1, 10.0.0.2"}, trusted, "198.51.100.1:0"},
		{"client in an earlier header line", proxy, []string{"198.51.100.1", "10.0.0.3, 10.0.0.2"}, trusted, "198.51.100.1:0"},
		{"all trusted: the left-most", proxy, []string{"10.0.0.3, 10.0.0.2"}, trusted, "10.0.0.3:0"},
		{"malformed entry stops the walk", proxy, []string{"198.51.100.1, garbage, 10.0.0.2"}, trusted, "10.0.0.2:0"},
		{"malformed right-most: the peer", proxy, []string{"198.51.100.1, unknown"}, trusted, proxy},
		{"empty entry is malformed", proxy, []string{"198.51.100.1,, 10.0.0.2"}, trusted, "10.0.0.2:0"},
		{"trailing comma", proxy, []string{"198.51.100.1,"}, trusted, proxy},
		{"empty header", proxy, []string{""}, trusted, proxy},
		{"spaces and tabs", proxy, []string{"\t198.51.100.1 ,\t10.0.0.2 "}, trusted, "198.51.100.1:0"},
		{"ipv4 with port", proxy, []string{"198.51.100.1:4711"}, trusted, "198.51.100.1:4711"},
		{"ipv6 bare", "[::1]:40000", []string{"2001:db8::1"}, trusted, "[2001:db8::1]:0"},
		{"ipv6 in brackets", "[::1]:40000", []string{"[2001:db8::1]"}, trusted, "[2001:db8::1]:0"},
		{"ipv6 with port", "[::1]:40000", []string{"[2001:db8::1]:4711"}, trusted, "[2001:db8::1]:4711"},
		{"ipv6 trusted hop", "[::1]:40000", []string{"2001:db8::1, fd00::2"}, trusted, "[2001:db8::1]:0"},
		{"ipv4 in brackets is malformed", proxy, []string{"[198.51.100.1]:80"}, trusted, proxy},
		{"ipv4 in bare brackets is malformed", proxy, []string{"[198.51.100.1]"}, trusted, proxy},
		{"zone is malformed", proxy, []string{"fe80::1%eth0"}, trusted, proxy},
		{"leading zero is malformed", proxy, []string{"198.051.100.1"}, trusted, proxy},
		{"ipv6 without brackets but with port is malformed", proxy, []string{"2001:db8::1:4711:80:1:2:3:4"}, trusted, proxy},
		{"mapped peer is trusted unmapped", "[::ffff:127.0.0.1]:40000", []string{"::ffff:198.51.100.1"}, trusted, "198.51.100.1:0"},
		{"mapped hop is trusted unmapped", proxy, []string{"198.51.100.1, ::ffff:10.0.0.2"}, trusted, "198.51.100.1:0"},
		{"peer zone dropped", "[fe80::1%eth0]:1", nil, trusted, "[fe80::1]:1"},
		{"too many hops", proxy, []string{"198.51.100.1" + strings.Repeat(", 10.0.0.1", 40)}, trusted, "10.0.0.1:0"},
		{"no RemoteAddr", "", nil, trusted, ""},
		{"unix socket", "@", nil, trusted, ""},
		{"RemoteAddr without port", "203.0.113.7", nil, trusted, ""},
	}
	for _, tt := range tests {
		r := &http.Request{RemoteAddr: tt.remote, Header: http.Header{}}
		if tt.xff != nil {
			r.Header["X-Forwarded-For"] = tt.xff
		}
		ap, ok := ClientAddr(r, tt.trusted)
		got := ""
		if ok {
			got = ap.String()
		}
		if got != tt.want {
			t.Errorf("%s: ClientAddr(%q, XFF %q) = %q; want %q", tt.name, tt.remote, tt.xff, got, tt.want)
		}
	}
}

func TestParseTrusted(t *testing.T) {
	tests := []struct {
		in, want string // want "error" for an error
	}{
		{"", "[]"},
		{" \t", "[]"},
		{"127.0.0.1", "[127.0.0.1/32]"},
		{"10.1.2.3/8", "[10.0.0.0/8]"},
		{"::1, fd00::/8", "[::1/128 fd00::/8]"},
		{"127.0.0.1/32,::1/128", "[127.0.0.1/32 ::1/128]"},
		{"::ffff:10.0.0.0/104", "[10.0.0.0/8]"},
		{"::ffff:127.0.0.1", "[127.0.0.1/32]"},
		{"::ffff:0:0/64", "[::/64]"},
		{"1.2.3.4,", "error"},
		{",1.2.3.4", "error"},
		{"nonsense", "error"},
		{"fe80::1%eth0", "error"},
		{"10.0.0.0/33", "error"},
		{"10.0.0.0/", "error"},
	}
	for _, tt := range tests {
		ps, err := ParseTrusted(tt.in)
		got := fmt.Sprint(ps)
		if err != nil {
			got = "error"
		}
		if got != tt.want {
			t.Errorf("ParseTrusted(%q) = %s (%v); want %s", tt.in, got, err, tt.want)
		}
	}
}

func FuzzClientAddr(f *testing.F) {
	f.Add("127.0.0.1:1", "198.51.100.1, 10.0.0.2", uint8(1))
	f.Add("[::1]:1", "[2001:db8::1]:80,fd00::1", uint8(1))
	f.Add("[::ffff:10.0.0.1]:1", "::ffff:198.51.100.1,garbage", uint8(2))
	f.Add("203.0.113.7:5", "1.2.3.4", uint8(0))
	f.Add("@", "", uint8(2))
	trust := [][]netip.Prefix{
		nil,
		{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128"), netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")},
		{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")},
	}
	f.Fuzz(func(t *testing.T, remote, xff string, mode uint8) {
		r := &http.Request{RemoteAddr: remote, Header: http.Header{}}
		var hops []string
		for v := range strings.SplitSeq(xff, "\n") { // several header lines
			r.Header.Add("X-Forwarded-For", v)
			hops = append(hops, strings.Split(v, ",")...)
		}
		got, ok := ClientAddr(r, trust[int(mode)%len(trust)])
		peer, err := netip.ParseAddrPort(remote)
		if ok != (err == nil) {
			t.Fatalf("ClientAddr(%q) ok = %v; ParseAddrPort error %v", remote, ok, err)
		}
		if !ok {
			return
		}
		if a := got.Addr(); !a.IsValid() || a.Zone() != "" || a.Is4In6() {
			t.Fatalf("ClientAddr = %v: want a valid address, unmapped, without zone", got)
		}
		if got == clean(peer) {
			return
		}
		for _, h := range hops {
			if hop, ok := parseHop(h); ok && hop == got {
				return
			}
		}
		t.Errorf("ClientAddr(%q, XFF %q) = %v: neither the peer nor an XFF entry", remote, xff, got)
	})
}

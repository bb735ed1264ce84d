package authfail

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
)

// maxHops bounds the X-Forwarded-For entries ClientAddr looks at.
const maxHops = 32

// ClientAddr returns the address of the client of r: the TCP peer (r.RemoteAddr), unless the
// peer is in trusted; then the right-most X-Forwarded-For entry that is not itself trusted
// (see the package comment). Addresses come back unmapped and without zone; the port is 0
// when the entry had none. It returns false only when r.RemoteAddr is not an ip:port (for
// example on a unix socket).
func ClientAddr(r *http.Request, trusted []netip.Prefix) (netip.AddrPort, bool) {
	peer, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.AddrPort{}, false
	}
	peer = clean(peer)
	if !isTrusted(trusted, peer.Addr()) {
		return peer, true
	}
	best, hops := peer, 0
	vals := r.Header["X-Forwarded-For"]
	for i := len(vals) - 1; i >= 0; i-- {
		v := vals[i]
		for {
			j := strings.LastIndexByte(v, ',')
			hop, ok := parseHop(v[j+1:])
			if !ok || hops == maxHops {
				return best, true
			}
			hops++
			if !isTrusted(trusted, hop.Addr()) {
				return hop, true
			}
			best = hop
			if j < 0 {
				break
			}
			v = v[:j]
		}
	}
	return best, true
}

// parseHop parses one X-Forwarded-For entry: "a.b.c.d", "a.b.c.d:port", "v6", "[v6]" or
// "[v6]:port", with optional surrounding spaces or tabs. Zones are refused.
func parseHop(s string) (netip.AddrPort, bool) {
	s = strings.Trim(s, " \t")
	var ap netip.AddrPort
	if a, err := netip.ParseAddr(s); err == nil {
		ap = netip.AddrPortFrom(a, 0)
	} else if len(s) > 2 && s[0] == '[' && s[len(s)-1] == ']' {
		a, err := netip.ParseAddr(s[1 : len(s)-1])
		if err != nil || !a.Is6() {
			return netip.AddrPort{}, false
		}
		ap = netip.AddrPortFrom(a, 0)
	} else if ap, err = netip.ParseAddrPort(s); err != nil {
		return netip.AddrPort{}, false
	}
	if ap.Addr().Zone() != "" {
		return netip.AddrPort{}, false
	}
	return clean(ap), true
}

// clean unmaps the address of ap and drops its zone.
func clean(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap().WithZone(""), ap.Port())
}

func isTrusted(trusted []netip.Prefix, a netip.Addr) bool {
	for _, p := range trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// ParseTrusted parses a comma-separated list of trusted proxies, each a CIDR prefix or a
// single address ("127.0.0.1/32, ::1, 10.0.0.0/8"), for a --trusted-proxies flag. An empty
// or blank list trusts nobody. Prefixes are masked and IPv4-mapped ones unmapped, so that
// they match the unmapped addresses ClientAddr compares them with; zones and empty entries
// are refused.
func ParseTrusted(list string) ([]netip.Prefix, error) {
	if strings.TrimSpace(list) == "" {
		return nil, nil
	}
	var out []netip.Prefix
	for item := range strings.SplitSeq(list, ",") {
		p, err := parsePrefix(strings.TrimSpace(item))
		if err != nil {
			return nil, fmt.Errorf("parsing trusted proxies: %w", err)
		}
		out = append(out, p)
	}
	return out, nil
}

func parsePrefix(s string) (netip.Prefix, error) {
	if s == "" {
		return netip.Prefix{}, errors.New("empty entry")
	}
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, err
		}
		if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	if a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("%q: zones are not allowed", s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

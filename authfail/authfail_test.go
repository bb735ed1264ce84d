package authfail

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// t0 is 2024-05-27 16:19:02 in CEST (+02:00).
var t0 = time.Date(2024, 5, 27, 14, 19, 2, 0, time.UTC)

var cest = time.FixedZone("CEST", 2*3600)

// newGuard opens a Guard on a fresh auth log in a temp dir, with timestamps in CEST unless o
// says otherwise.
func newGuard(t testing.TB, o Options) (*Guard, string) {
	t.Helper()
	if o.LogPath == "" {
		o.LogPath = filepath.Join(t.TempDir(), "auth.log")
	}
	if o.Location == nil {
		o.Location = cest
	}
	g, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	return g, o.LogPath
}

func readLog(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestLineFormat(t *testing.T) {
	tests := []struct {
		name         string
		loc          *time.Location
		client       netip.AddrPort
		user, reason string
		want         string
	}{
		{"ipv4", cest, netip.MustParseAddrPort("203.0.113.7:51234"), "alice@pbs", "invalid credentials",
			"2024-05-27T16:19:02+02:00: authentication failure; rhost=[203.0.113.7]:51234 user=alice@pbs msg=invalid credentials\n"},
		{"utc is +00:00", time.UTC, netip.MustParseAddrPort("203.0.113.7:51234"), "alice@pbs", "invalid credentials",
			"2024-05-27T14:19:02+00:00: authentication failure; rhost=[203.0.113.7]:51234 user=alice@pbs msg=invalid credentials\n"},
		{"half-hour offset", time.FixedZone("", -(3*3600 + 1800)), netip.MustParseAddrPort("203.0.113.7:1"), "a@pam", "x",
			"2024-05-27T10:49:02-03:30: authentication failure; rhost=[203.0.113.7]:1 user=a@pam msg=x\n"},
		{"ipv4-mapped is unmapped", cest, netip.MustParseAddrPort("[::ffff:203.0.113.7]:443"), "root@pam", "authentication failed",
			"2024-05-27T16:19:02+02:00: authentication failure; rhost=[203.0.113.7]:443 user=root@pam msg=authentication failed\n"},
		{"ipv6", cest, netip.MustParseAddrPort("[2001:db8::7]:8007"), "bob@pbs!ci", "invalid token secret",
			"2024-05-27T16:19:02+02:00: authentication failure; rhost=[2001:db8::7]:8007 user=bob@pbs!ci msg=invalid token secret\n"},
		{"zone dropped", cest, netip.MustParseAddrPort("[fe80::1%eth0]:2"), "u@pbs", "x",
			"2024-05-27T16:19:02+02:00: authentication failure; rhost=[fe80::1]:2 user=u@pbs msg=x\n"},
		{"no port", cest, netip.AddrPortFrom(netip.MustParseAddr("198.51.100.1"), 0), "u@pbs", "x",
			"2024-05-27T16:19:02+02:00: authentication failure; rhost=[198.51.100.1]:0 user=u@pbs msg=x\n"},
		{"no user: left out, as PBS", cest, netip.MustParseAddrPort("203.0.113.7:51234"), "", "no authentication credentials provided.",
			"2024-05-27T16:19:02+02:00: authentication failure; rhost=[203.0.113.7]:51234 msg=no authentication credentials provided.\n"},
		{"no address", cest, netip.AddrPort{}, "u@pbs", "x",
			"2024-05-27T16:19:02+02:00: authentication failure; rhost=unknown user=u@pbs msg=x\n"},
		{"sanitized", cest, netip.MustParseAddrPort("203.0.113.7:1"), "ev il\n2024", "bad\r\nline",
			"2024-05-27T16:19:02+02:00: authentication failure; rhost=[203.0.113.7]:1 user=ev?il?2024 msg=bad??line\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, path := newGuard(t, Options{Location: tt.loc})
			if err := g.Fail(tt.client, tt.user, tt.reason, t0); err != nil {
				t.Fatal(err)
			}
			if got := readLog(t, path); got != tt.want {
				t.Errorf("Fail(%v, %q, %q) wrote\n%q; want\n%q", tt.client, tt.user, tt.reason, got, tt.want)
			}
		})
	}
}

func TestTimestampIsRFC3339(t *testing.T) {
	line := string(appendLine(nil, t0.In(cest), netip.MustParseAddrPort("203.0.113.7:1"), "u@pbs", "x"))
	ts, _, ok := strings.Cut(line, ": ")
	if !ok {
		t.Fatalf("line %q has no \": \"", line)
	}
	got, err := time.Parse(time.RFC3339, ts)
	if err != nil || !got.Equal(t0) {
		t.Errorf("time.Parse(RFC3339, %q) = %v, %v; want %v", ts, got, err, t0)
	}
}

// sanitized is appendClean on its own.
func sanitized(s string, limit int, spaces bool) string {
	return string(appendClean(nil, s, limit, spaces))
}

func TestSanitize(t *testing.T) {
	tests := []struct {
		name, in string
		spaces   bool
		want     string
	}{
		{"plain user", "alice@pbs!tok", false, "alice@pbs!tok"},
		{"LF", "a\nb", true, "a?b"},
		{"CRLF", "a\r\nb", true, "a??b"},
		{"NUL and escape", "\x00\x1b[31mred", true, "??[31mred"},
		{"tab", "tab\there", true, "tab?here"},
		{"DEL", "del\x7f", true, "del?"},
		{"C1 NEL", "nel\u0085x", true, "nel?x"},
		{"line and paragraph separators", "ls\u2028ps\u2029", true, "ls?ps?"},
		{"bidi override", "bidi\u202egnp.exe", true, "bidi?gnp.exe"},
		{"zero width space", "zw\u200bsp", true, "zw?sp"},
		{"no-break space", "nb\u00a0sp", true, "nb?sp"},
		{"invalid UTF-8", "bad\xff\xfeutf8", true, "bad??utf8"},
		{"space in user", "a b", false, "a?b"},
		{"space in message", "a b", true, "a b"},
		{"printable unicode kept", "ünïcödé ✓ 🔑", true, "ünïcödé ✓ 🔑"},
		{"rhost= defanged", "x rhost=[8.8.8.8]:1", true, "x rhost:[8.8.8.8]:1"},
		{"RHOST= defanged", "RhOsT=1", true, "RhOsT:1"},
		{"rhost without = kept", "rhost 1", true, "rhost 1"},
		{"at the limit", strings.Repeat("a", 256), false, strings.Repeat("a", 256)},
		{"over the limit", strings.Repeat("a", 257), false, strings.Repeat("a", 253) + "..."},
		{"cut at a rune start", strings.Repeat("é", 200), false, strings.Repeat("é", 126) + "..."},
		{"huge", strings.Repeat("\n", 1<<20), false, strings.Repeat("?", 253) + "..."},
	}
	for _, tt := range tests {
		if got := sanitized(tt.in, 256, tt.spaces); got != tt.want {
			t.Errorf("%s: appendClean(%.40q, 256, %v) = %.300q; want %.300q", tt.name, tt.in, tt.spaces, got, tt.want)
		}
	}
}

func TestLineLengthBounded(t *testing.T) {
	huge := strings.Repeat("é\n", 1<<16)
	line := appendLine(nil, t0, netip.MustParseAddrPort("[2001:db8:1:2:3:4:5:6]:65535"), huge, huge)
	if len(line) > 1500 {
		t.Errorf("line of huge user and reason is %d bytes; want <= 1500 (PIPE_BUF is 4096)", len(line))
	}
}

// fail2ban's <HOST> (fail2ban/server/failregex.py R_HOST[RI_HOST], with IPAddr.IP_4_RE and
// IP_6_RE of fail2ban/server/ipdns.py). RE2 has no lookbehind: IP_6_RE ends in
// "(?:[0-9a-fA-F]{1,4}|(?<=:):)", and the repetition before it always ends in ':', so the
// lookbehind always holds and "(?<=:):" is ":".
const (
	f2bIP4  = `(?:\d{1,3}\.){3}\d{1,3}`
	f2bIP6  = `(?:[0-9a-fA-F]{1,4}::?|::){1,7}(?:[0-9a-fA-F]{1,4}|:)`
	f2bHost = `(?:\[?(?:(?:::f{4,6}:)?(?P<ip4>` + f2bIP4 + `)|(?P<ip6>` + f2bIP6 + `))\]?|(?P<dns>[\w\-.^_]*\w))`
)

// fail2ban filters for PBS's auth.log.
var f2bFilters = []struct{ name, failregex string }{
	// filter.d/proxmox-backup-server.conf of the Proxmox wiki's Fail2ban page for PBS
	// (pbs.proxmox.com/wiki/Fail2ban, 2024), as reproduced word for word in hardening guides
	// next to its jail (logpath /var/log/proxmox-backup/api/auth.log, port 8007).
	{"pbs wiki", `authentication failure; rhost=\[<HOST>\]:\d+ user=.* msg=.*`},
	// The same anchored with a greedy prefix, which would prefer a second "rhost=" later on the
	// line: the shape an injected host would exploit.
	{"greedy", `^.*authentication failure; rhost=\[<HOST>\]:\d+ user=.* msg=.*$`},
	// github.com/xodaaaa/fail2ban-proxmox-backup-server filter.d/proxmox-backup-server.conf
	// (by Marco Gabriel, inett GmbH): only some messages count.
	{"inett", `authentication failure; rhost=\[<HOST>\](:\d+)?\s+(user=\S+\s+)?msg=(AUTH_ERR( \([^)]*\))?|no authentication credentials provided\.|invalid credentials|user account disabled or expired|authentication error - SUCCESS \([^)]*\)|authentication failed)`},
}

// f2bHostOf applies re as fail2ban does (a search) and returns the host it captures, or "".
func f2bHostOf(re *regexp.Regexp, line string) string {
	m := re.FindStringSubmatch(line)
	if m == nil {
		return ""
	}
	for _, g := range []string{"ip4", "ip6", "dns"} {
		if h := m[re.SubexpIndex(g)]; h != "" {
			return h
		}
	}
	return ""
}

func compileF2B(t testing.TB) []*regexp.Regexp {
	t.Helper()
	var res []*regexp.Regexp
	for _, f := range f2bFilters {
		re, err := regexp.Compile(strings.ReplaceAll(f.failregex, "<HOST>", f2bHost))
		if err != nil {
			t.Fatalf("filter %s: %v", f.name, err)
		}
		res = append(res, re)
	}
	return res
}

func TestFail2banFilters(t *testing.T) {
	res := compileF2B(t)
	ours := func(client, user, reason string) string {
		return string(appendLine(nil, t0.In(cest), netip.MustParseAddrPort(client), user, reason))
	}
	const injected = "x authentication failure; rhost=[8.8.8.8]:1 user=root@pam msg=y"
	tests := []struct {
		name string
		line string
		want []string // host per filter: pbs wiki, greedy, inett; "" = no match
	}{
		// Lines PBS wrote, from the inett filter's comments: the translation of <HOST> is right.
		{"pbs: disabled user", "2020-11-24T13:17:27+01:00: authentication failure; rhost=[::ffff:17.225.71.15]:29315 user=root@pbs msg=user account disabled or expired.\n",
			[]string{"17.225.71.15", "17.225.71.15", "17.225.71.15"}},
		{"pbs: no credentials", "2020-11-24T13:17:27+01:00: authentication failure; rhost=[::ffff:17.225.71.15]:29315 msg=no authentication credentials provided.\n",
			[]string{"", "", "17.225.71.15"}},
		{"ours: ipv4", ours("203.0.113.7:51234", "root@pam", "authentication failed"),
			[]string{"203.0.113.7", "203.0.113.7", "203.0.113.7"}},
		{"ours: mapped", ours("[::ffff:203.0.113.7]:51234", "root@pam", "invalid credentials"),
			[]string{"203.0.113.7", "203.0.113.7", "203.0.113.7"}},
		{"ours: ipv6", ours("[2001:db8:1:2::7]:51234", "root@pam", "invalid credentials"),
			[]string{"2001:db8:1:2::7", "2001:db8:1:2::7", "2001:db8:1:2::7"}},
		{"ours: port 0", ours("198.51.100.1:0", "alice@pbs", "invalid credentials"),
			[]string{"198.51.100.1", "198.51.100.1", "198.51.100.1"}},
		{"ours: other message", ours("198.51.100.1:5", "alice@pbs", "invalid ticket"),
			[]string{"198.51.100.1", "198.51.100.1", ""}},
		{"ours: no user", ours("203.0.113.7:51234", "", "no authentication credentials provided."),
			[]string{"", "", "203.0.113.7"}},
		{"injection in user", ours("203.0.113.7:1", "evil msg=z "+injected, "invalid credentials"),
			[]string{"203.0.113.7", "203.0.113.7", "203.0.113.7"}},
		{"injection in message", ours("203.0.113.7:1", "root@pam", injected),
			[]string{"203.0.113.7", "203.0.113.7", ""}},
		{"injection in message, no user", ours("203.0.113.7:1", "", injected),
			[]string{"", "", ""}},
		{"new line in message", ours("203.0.113.7:1", "root@pam", "x\n2024-05-27T16:19:02+02:00: authentication failure; rhost=[8.8.8.8]:1 user=a@pam msg=invalid credentials"),
			[]string{"203.0.113.7", "203.0.113.7", ""}},
	}
	for _, tt := range tests {
		if strings.Count(tt.line, "\n") != 1 || !strings.HasSuffix(tt.line, "\n") {
			t.Errorf("%s: line %q is not one line", tt.name, tt.line)
			continue
		}
		line := strings.TrimSuffix(tt.line, "\n")
		// fail2ban cuts the date out of the line before applying failregex; try both.
		ts, rest, _ := strings.Cut(line, ": ")
		if _, err := time.Parse(time.RFC3339, ts); err != nil {
			t.Errorf("%s: timestamp %q: %v", tt.name, ts, err)
		}
		for i, re := range res {
			for _, l := range []string{line, ": " + rest} {
				if got := f2bHostOf(re, l); got != tt.want[i] {
					t.Errorf("%s: filter %q on %q: host %q; want %q", tt.name, f2bFilters[i].name, l, got, tt.want[i])
				}
			}
		}
	}
}

func TestLimit(t *testing.T) {
	g, _ := newGuard(t, Options{Burst: 3, Refill: 10 * time.Second})
	client := netip.MustParseAddrPort("203.0.113.7:1")
	steps := []struct {
		at    time.Duration
		fail  bool
		allow bool
		retry time.Duration
	}{
		{at: 0, allow: true},
		{at: 0, fail: true, allow: true},
		{at: 0, fail: true, allow: true},
		{at: 0, fail: true, allow: false, retry: 10 * time.Second},
		{at: 10*time.Second - 1, allow: false, retry: 1},
		{at: 10 * time.Second, allow: true},
		{at: 10 * time.Second, fail: true, allow: false, retry: 10 * time.Second},
		{at: 25 * time.Second, fail: true, allow: false, retry: 5 * time.Second}, // a failure that slipped through costs too
		{at: 30 * time.Second, allow: true},
		{at: 50 * time.Second, allow: true},
	}
	for i, s := range steps {
		now := t0.Add(s.at)
		if s.fail {
			if err := g.Fail(client, "u@pbs", "x", now); err != nil {
				t.Fatal(err)
			}
		}
		if got := g.Allow(client.Addr(), now); got != s.allow {
			t.Errorf("step %d (at %v, fail %v): Allow = %v; want %v", i, s.at, s.fail, got, s.allow)
		}
		if got := g.RetryAfter(client.Addr(), now); got != s.retry {
			t.Errorf("step %d (at %v, fail %v): RetryAfter = %v; want %v", i, s.at, s.fail, got, s.retry)
		}
	}
}

func TestLimitDefaults(t *testing.T) {
	g, _ := newGuard(t, Options{})
	ip := netip.MustParseAddr("203.0.113.7")
	for i := range DefaultBurst {
		if !g.Allow(ip, t0) {
			t.Fatalf("Allow after %d failures = false; want true", i)
		}
		g.Fail(netip.AddrPortFrom(ip, 1), "u@pbs", "x", t0)
	}
	if g.Allow(ip, t0) {
		t.Errorf("Allow after %d failures = true; want false", DefaultBurst)
	}
	if got := g.RetryAfter(ip, t0); got != DefaultRefill {
		t.Errorf("RetryAfter after %d failures = %v; want %v", DefaultBurst, got, DefaultRefill)
	}
	if !g.Allow(ip, t0.Add(DefaultRefill)) {
		t.Errorf("Allow one refill later = false; want true")
	}
}

// Failures of attempts that all passed Allow at once (concurrent requests) each cost a refill,
// up to MaxDebt.
func TestLimitConcurrentFailuresCost(t *testing.T) {
	g, _ := newGuard(t, Options{})
	client := netip.MustParseAddrPort("203.0.113.7:1")
	for range 20 {
		g.Fail(client, "u@pbs", "x", t0)
	}
	if got, want := g.RetryAfter(client.Addr(), t0), (20-9)*DefaultRefill; got != want {
		t.Errorf("RetryAfter after 20 failures at once = %v; want %v", got, want)
	}
	for range 20_000 {
		g.lim.fail(keyOf(client.Addr()), g.lim.since(t0))
	}
	if got, want := g.RetryAfter(client.Addr(), t0), MaxDebt-9*DefaultRefill; got != want {
		t.Errorf("RetryAfter after 20 020 failures at once = %v; want %v (debt capped at %v)", got, want, MaxDebt)
	}
}

func TestLimitGroups(t *testing.T) {
	tests := []struct {
		a, b string
		same bool
	}{
		{"2001:db8:1:2::1", "2001:db8:1:2:ffff:ffff:ffff:ffff", true},
		{"2001:db8:1:2::1", "2001:db8:1:3::1", false},
		{"fe80::1%eth0", "fe80::2", true},
		{"192.0.2.1", "::ffff:192.0.2.1", true},
		{"192.0.2.1", "192.0.2.2", false},
		{"192.0.2.1", "::c000:201", false}, // IPv4-compatible is plain IPv6
		{"::ffff:0.0.0.0", "::", false},
	}
	for _, tt := range tests {
		g, _ := newGuard(t, Options{Burst: 1})
		a, b := netip.MustParseAddr(tt.a), netip.MustParseAddr(tt.b)
		g.Fail(netip.AddrPortFrom(a, 1), "u@pbs", "x", t0)
		if got := g.Allow(b, t0); got != !tt.same {
			t.Errorf("after Fail(%s): Allow(%s) = %v; want %v (same client: %v)", a, b, got, !tt.same, tt.same)
		}
	}
}

func TestMaxClients(t *testing.T) {
	g, _ := newGuard(t, Options{Burst: 10, MaxClients: 3})
	fail := func(ip string, n int, at time.Duration) {
		for range n {
			g.Fail(netip.AddrPortFrom(netip.MustParseAddr(ip), 1), "u@pbs", "x", t0.Add(at))
		}
	}
	fail("192.0.2.1", 10, 0) // blocked, deepest in debt
	fail("192.0.2.2", 1, 0)  // nearest to paid off
	fail("192.0.2.3", 1, time.Millisecond)
	fail("192.0.2.4", 1, 2*time.Millisecond)
	if n := len(g.lim.clients); n != 3 {
		t.Errorf("clients tracked = %d; want 3 (MaxClients)", n)
	}
	for ip, want := range map[string]bool{"192.0.2.1": true, "192.0.2.2": false, "192.0.2.3": true, "192.0.2.4": true} {
		if _, got := g.lim.clients[keyOf(netip.MustParseAddr(ip))]; got != want {
			t.Errorf("%s tracked = %v; want %v", ip, got, want)
		}
	}
	if g.Allow(netip.MustParseAddr("192.0.2.1"), t0) {
		t.Errorf("Allow(192.0.2.1) = true; the most indebted client must stay blocked")
	}
	// Once everyone has paid off, the next Fail drops them all.
	fail("192.0.2.5", 1, time.Hour)
	if n := len(g.lim.clients); n != 1 || len(g.lim.queue) != 1 {
		t.Errorf("clients tracked after all paid off = %d (queue %d); want 1", n, len(g.lim.queue))
	}
}

func TestMaxClientsMany(t *testing.T) {
	g, _ := newGuard(t, Options{MaxClients: 100})
	for i := range 10_000 {
		ip := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		g.lim.fail(keyOf(ip), g.lim.since(t0.Add(time.Duration(i)*time.Millisecond)))
	}
	if n, q := len(g.lim.clients), len(g.lim.queue); n != 100 || q != 100 {
		t.Errorf("clients tracked = %d, queue %d; want 100", n, q)
	}
	for i, c := range g.lim.queue {
		if c.index != i || g.lim.clients[c.key] != c {
			t.Fatalf("queue[%d] = %+v: index or map entry wrong", i, c)
		}
	}
}

func TestAllowDoesNotAllocate(t *testing.T) {
	g, _ := newGuard(t, Options{})
	known, unknown := netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("192.0.2.9")
	g.Fail(netip.AddrPortFrom(known, 1), "u@pbs", "x", t0)
	for _, ip := range []netip.Addr{known, unknown} {
		if n := testing.AllocsPerRun(100, func() { g.Allow(ip, t0) }); n != 0 {
			t.Errorf("Allow(%s) allocates %v times; want 0", ip, n)
		}
	}
}

func BenchmarkAllow(b *testing.B) {
	g, _ := newGuard(b, Options{})
	ip := netip.MustParseAddr("203.0.113.7")
	g.Fail(netip.AddrPortFrom(ip, 1), "u@pbs", "x", t0)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			g.Allow(ip, t0)
		}
	})
}

// Eight goroutines on two Guards (two descriptors, two mutexes: as two processes) append to one
// file; every line must come out whole.
func TestConcurrentFailWholeLines(t *testing.T) {
	g1, path := newGuard(t, Options{})
	g2, _ := newGuard(t, Options{LogPath: path})
	const workers, perWorker = 8, 200
	reason := strings.Repeat("x", MaxReasonLen)
	var wg sync.WaitGroup
	for w := range workers {
		g := g1
		if w%2 == 1 {
			g = g2
		}
		wg.Go(func() {
			client := netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 51, 100, byte(w)}), uint16(w))
			for range perWorker {
				g.Allow(client.Addr(), t0)
				if err := g.Fail(client, fmt.Sprintf("g%d@pbs", w), reason, t0); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	lineRE := regexp.MustCompile(`^2024-05-27T16:19:02\+02:00: authentication failure; rhost=\[198\.51\.100\.(\d)\]:(\d) user=g(\d)@pbs msg=(x+)$`)
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	n := 0
	for sc.Scan() {
		n++
		m := lineRE.FindStringSubmatch(sc.Text())
		if m == nil || m[1] != m[2] || m[1] != m[3] || len(m[4]) != MaxReasonLen {
			t.Fatalf("line %d is torn or mixed: %.120q", n, sc.Text())
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if n != workers*perWorker {
		t.Errorf("log has %d lines; want %d", n, workers*perWorker)
	}
}

func TestReopenAndClose(t *testing.T) {
	g, path := newGuard(t, Options{})
	client := netip.MustParseAddrPort("203.0.113.7:1")
	if err := g.Fail(client, "one@pbs", "x", t0); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path, path+".1"); err != nil { // logrotate
		t.Fatal(err)
	}
	if err := g.Reopen(); err != nil {
		t.Fatal(err)
	}
	if err := g.Fail(client, "two@pbs", "x", t0); err != nil {
		t.Fatal(err)
	}
	if old, cur := readLog(t, path+".1"), readLog(t, path); !strings.Contains(old, "user=one@pbs") || strings.Contains(old, "two") ||
		!strings.Contains(cur, "user=two@pbs") || strings.Contains(cur, "one") {
		t.Errorf("after rotation and Reopen: old file %q, new file %q; want one line each", old, cur)
	}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	if err := g.Fail(client, "three@pbs", "x", t0); !errors.Is(err, os.ErrClosed) {
		t.Errorf("Fail after Close = %v; want os.ErrClosed", err)
	}
	if g.Allow(client.Addr(), t0) != true || g.RetryAfter(client.Addr(), t0) != 0 {
		t.Errorf("three failures of ten: client blocked")
	}
	if err := g.Reopen(); !errors.Is(err, os.ErrClosed) {
		t.Errorf("Reopen after Close = %v; want os.ErrClosed", err)
	}
	if err := g.Close(); err != nil {
		t.Errorf("second Close = %v; want nil", err)
	}
}

func TestOpen(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "auth.log")
	if err := os.WriteFile(path, []byte("old line\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	g, _ := newGuard(t, Options{LogPath: path})
	g.Fail(netip.MustParseAddrPort("203.0.113.7:1"), "u@pbs", "x", t0)
	if got := readLog(t, path); !strings.HasPrefix(got, "old line\n2024-") {
		t.Errorf("log after Fail = %q; want the old line kept and the new one appended", got)
	}

	fresh := filepath.Join(dir, "fresh.log")
	newGuard(t, Options{LogPath: fresh})
	fi, err := os.Stat(fresh)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm&^0o640 != 0 {
		t.Errorf("new log mode = %v; want at most 0640", perm)
	}

	errs := []struct {
		name string
		o    Options
		is   error
	}{
		{"no path", Options{}, nil},
		{"not a regular file", Options{LogPath: os.DevNull}, ErrNotRegular},
		{"missing directory", Options{LogPath: filepath.Join(dir, "nope", "auth.log")}, fs.ErrNotExist},
		{"window over a day", Options{LogPath: path, Burst: 1000, Refill: 2 * time.Minute}, nil},
	}
	for _, tt := range errs {
		g, err := Open(tt.o)
		if err == nil {
			g.Close()
			t.Errorf("%s: Open(%+v) succeeded; want an error", tt.name, tt.o)
		} else if tt.is != nil && !errors.Is(err, tt.is) {
			t.Errorf("%s: Open(%+v) = %v; want %v", tt.name, tt.o, err, tt.is)
		}
	}
}

func TestWait(t *testing.T) {
	tests := []struct {
		name  string
		delay time.Duration
		want  []time.Duration
	}{
		{"default is PBS's 3 s", 0, []time.Duration{3 * time.Second}},
		{"configured", 500 * time.Millisecond, []time.Duration{500 * time.Millisecond}},
		{"disabled", -1, nil},
	}
	for _, tt := range tests {
		var got []time.Duration
		g, _ := newGuard(t, Options{Delay: tt.delay, Sleep: func(ctx context.Context, d time.Duration) error {
			got = append(got, d)
			return nil
		}})
		if err := g.Wait(context.Background()); err != nil {
			t.Errorf("%s: Wait = %v", tt.name, err)
		}
		if fmt.Sprint(got) != fmt.Sprint(tt.want) {
			t.Errorf("%s: Wait slept %v; want %v", tt.name, got, tt.want)
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	g, _ := newGuard(t, Options{}) // the real timer: returns at once on a done context
	if err := g.Wait(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Wait(canceled) = %v; want context.Canceled", err)
	}
}

// The default sleeper, on synctest's fake clock.
func TestSleep(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		if err := sleep(context.Background(), DefaultDelay); err != nil {
			t.Fatal(err)
		}
		if got := time.Since(start); got != DefaultDelay {
			t.Errorf("sleep(3s) took %v; want 3s", got)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		start = time.Now()
		if err := sleep(ctx, DefaultDelay); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("sleep(3s) with a 1 s deadline = %v; want DeadlineExceeded", err)
		}
		if got := time.Since(start); got != time.Second {
			t.Errorf("sleep(3s) with a 1 s deadline took %v; want 1s", got)
		}
	})
}

func FuzzSanitize(f *testing.F) {
	for _, s := range []string{"alice@pbs", "a\nb", "\x1b[2J", "x rhost=[8.8.8.8]:1", "RHOST=", "é\u2028\u202e", "\xff\xfe", strings.Repeat("ü", 300)} {
		f.Add(s, true)
		f.Add(s, false)
	}
	f.Fuzz(func(t *testing.T, s string, spaces bool) {
		const limit = 64
		got := sanitized(s, limit, spaces)
		checkClean(t, got, limit, spaces)
		if again := sanitized(got, limit, spaces); again != got {
			t.Errorf("appendClean not idempotent: %q -> %q -> %q", s, got, again)
		}
	})
}

// checkClean checks appendClean's promises. strconv.IsPrint is unicode.IsPrint computed from
// strconv's own tables, so the check does not share the code it checks.
func checkClean(t *testing.T, got string, limit int, spaces bool) {
	t.Helper()
	if len(got) > limit {
		t.Errorf("appendClean output is %d bytes; want <= %d", len(got), limit)
	}
	for i, r := range got {
		if r == ' ' && spaces {
			continue
		}
		if r == ' ' || !strconv.IsPrint(r) || r == '\uFFFD' {
			t.Fatalf("appendClean output %q has %U at %d", got, r, i)
		}
	}
	if strings.Contains(strings.ToLower(got), "rhost=") {
		t.Errorf("appendClean output %q contains rhost=", got)
	}
}

// FuzzFailLine checks whole lines: one line, and the fail2ban filters find the real client or
// nothing, whatever the user and reason.
func FuzzFailLine(f *testing.F) {
	f.Add("root@pam", "authentication failed", uint16(1))
	f.Add("", "x authentication failure; rhost=[8.8.8.8]:1 user=a msg=b", uint16(0))
	f.Add("a b rhost=[8.8.8.8]:2 user=c", "\n2024-05-27T16:19:02+02:00: authentication failure; rhost=[8.8.8.8]:1 user=root@pam msg=x", uint16(65535))
	res := compileF2B(f)
	f.Fuzz(func(t *testing.T, user, reason string, port uint16) {
		client := netip.AddrPortFrom(netip.MustParseAddr("203.0.113.7"), port)
		line := string(appendLine(nil, t0.In(cest), client, user, reason))
		if strings.Count(line, "\n") != 1 || !strings.HasSuffix(line, "\n") {
			t.Fatalf("line %q is not exactly one line", line)
		}
		body := strings.TrimSuffix(line, "\n")
		for _, r := range body {
			if r != ' ' && !strconv.IsPrint(r) {
				t.Fatalf("line %q has %U", line, r)
			}
		}
		for i, re := range res {
			if h := f2bHostOf(re, body); h != "" && h != "203.0.113.7" {
				t.Errorf("filter %q finds host %q in %q", f2bFilters[i].name, h, body)
			}
		}
		if user != "" && f2bHostOf(res[0], body) != "203.0.113.7" {
			t.Errorf("PBS wiki filter does not match %q", body)
		}
	})
}

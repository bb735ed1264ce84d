package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"html"
	"image"
	"image/png"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/cdproto/webauthn"
	"github.com/chromedp/chromedp"
)

// browserTimeout bounds every browser step of a test (start, navigation, login, screenshot).
const browserTimeout = 30 * time.Second

// needChromium returns the Chromium binary: /usr/bin/chromium, else "chromium" in PATH. It
// skips the test when there is none, or fails it under GATEHOUSE_REQUIRE_TOOLS.
func needChromium(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat("/usr/bin/chromium"); err == nil {
		return "/usr/bin/chromium"
	}
	return requireTool(t, "chromium", "chromium")
}

// browser is one headless Chromium with one tab, trusting proxyd's certificate, and what the
// tab reported so far (console errors, requests). Its methods fail the test on errors.
type browser struct {
	ctx  context.Context // the tab; done at cleanup
	base string          // https://localhost:<proxyd port>: a domain, as WebAuthn wants
	dir  string          // --user-data-dir
	pid  int             // the browser process

	mu       sync.Mutex
	errs     []string                              // console errors, exceptions, error log entries
	requests map[network.RequestID]*browserRequest // by request id
	order    []network.RequestID                   // requests in the order they started
	shots    string                                // screenshot directory, made on first use
}

// browserRequest is one request of the tab, as the Network domain reported it.
type browserRequest struct {
	method, url string
	docType     bool     // a document (navigation), not a subresource
	sentCookies []string // names of the cookies sent (associated and not blocked)
	status      int64    // 0 until the response arrives
}

// spkiHash is the base64 SHA-256 of the SubjectPublicKeyInfo of the first certificate in the
// PEM file, the form --ignore-certificate-errors-spki-list takes.
func spkiHash(t *testing.T, pemFile string) string {
	t.Helper()
	data, err := os.ReadFile(pemFile)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(data)
	if blk == nil {
		t.Fatalf("%s: no PEM block", pemFile)
	}
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatalf("%s: %v", pemFile, err)
	}
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return base64.StdEncoding.EncodeToString(sum[:])
}

// newBrowser starts headless Chromium for st: a new profile in a temporary directory, no
// background traffic (updates, sync, QUIC, reporting off), and proxyd's certificate accepted
// through its public key hash, --ignore-certificate-errors-spki-list: the page is then a
// secure context without a certificate error (which WebAuthn would refuse). Only that key is
// trusted; any other certificate is still an error. The browser is stopped at cleanup, which
// fails the test if a Chromium process is left.
func newBrowser(t *testing.T, st *stack) *browser {
	t.Helper()
	bin := needChromium(t)
	u, err := url.Parse(st.url)
	if err != nil {
		t.Fatal(err)
	}
	b := &browser{
		base:     "https://localhost:" + u.Port(),
		dir:      t.TempDir(),
		requests: map[network.RequestID]*browserRequest{},
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(bin),
		chromedp.UserDataDir(b.dir),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true), // root in a container: no usable setuid/user-namespace sandbox
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-domain-reliability", true),
		chromedp.Flag("ignore-certificate-errors-spki-list", spkiHash(t, st.dirs.ProxyCert())),
		chromedp.WindowSize(1024, 768),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(allocCtx)
	b.ctx = ctx
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancelTab()
		cancelAlloc() // waits for the browser process to exit
	}
	t.Cleanup(func() {
		stop()
		if b.pid != 0 {
			if _, err := os.Stat(fmt.Sprintf("/proc/%d", b.pid)); err == nil {
				if state, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", b.pid)); !bytes.Contains(state, []byte(") Z ")) {
					t.Errorf("chromium (pid %d) still running after cleanup", b.pid)
				}
			}
		}
		if left := processesUsing(b.dir); len(left) > 0 {
			t.Errorf("chromium processes left using %s: %v", b.dir, left)
		}
	})
	// Listen opens the browser and the tab; the events go to b under its lock.
	if err := chromedp.Listen(ctx, b.event); err != nil {
		stop()
		t.Fatalf("starting chromium (%s): %v", bin, err)
	}
	b.pid = chromedp.FromContext(ctx).Browser.Process().Pid
	t.Logf("chromium pid %d, profile %s, base %s", b.pid, b.dir, b.base)
	return b
}

// processesUsing returns the pids of the processes whose command line names dir (Chromium's
// helpers carry --user-data-dir).
func processesUsing(dir string) []string {
	ents, _ := os.ReadDir("/proc")
	var pids []string
	for _, e := range ents {
		if e.Name()[0] < '0' || e.Name()[0] > '9' {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && bytes.Contains(cmdline, []byte("--user-data-dir="+dir)) {
			pids = append(pids, e.Name())
		}
	}
	return pids
}

// event records one event of the tab. It runs on chromedp's reading goroutine: it only
// appends under b.mu.
func (b *browser) event(ev any) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch ev := ev.(type) {
	case *runtime.EventConsoleAPICalled:
		if ev.Type == runtime.ConsoleAPICalledTypeError || ev.Type == runtime.ConsoleAPICalledTypeAssert {
			var args []string
			for _, a := range ev.Args {
				if len(a.Value) > 0 {
					args = append(args, string(a.Value))
				} else {
					args = append(args, a.Description)
				}
			}
			b.errs = append(b.errs, fmt.Sprintf("console.%s: %s", ev.Type, strings.Join(args, " ")))
		}
	case *runtime.EventExceptionThrown:
		d := ev.ExceptionDetails
		msg := d.Text
		if d.Exception != nil && d.Exception.Description != "" {
			msg += " " + d.Exception.Description
		}
		b.errs = append(b.errs, fmt.Sprintf("exception at %s:%d: %s", d.URL, d.LineNumber+1, msg))
	case *log.EventEntryAdded:
		// A refused API call is the page's normal flow (a wrong password is 401) and the
		// tests check those answers themselves; a failed page resource is an error.
		// The same goes for the pages' session probe.
		api := ev.Entry.Source == log.EntrySourceNetwork && (strings.HasPrefix(ev.Entry.URL, b.base+"/api2/") ||
			ev.Entry.URL == b.base+"/gatehouse/session")
		if ev.Entry.Level == log.EntryLevelError && !api {
			b.errs = append(b.errs, fmt.Sprintf("log %s: %s (%s)", ev.Entry.Source, ev.Entry.Text, ev.Entry.URL))
		}
	case *network.EventRequestWillBeSent:
		r := b.request(ev.RequestID)
		r.method, r.url, r.docType = ev.Request.Method, ev.Request.URL, ev.Type == network.ResourceTypeDocument
	case *network.EventRequestWillBeSentExtraInfo:
		r := b.request(ev.RequestID)
		for _, c := range ev.AssociatedCookies {
			if len(c.BlockedReasons) == 0 && c.Cookie != nil {
				r.sentCookies = append(r.sentCookies, c.Cookie.Name)
			}
		}
	case *network.EventResponseReceived:
		b.request(ev.RequestID).status = ev.Response.Status
	}
}

// request returns the record for id, adding it; b.mu is held.
func (b *browser) request(id network.RequestID) *browserRequest {
	r := b.requests[id]
	if r == nil {
		r = &browserRequest{}
		b.requests[id] = r
		b.order = append(b.order, id)
	}
	return r
}

// requestsTo returns copies of the requests made so far to exactly rawURL, in order.
func (b *browser) requestsTo(rawURL string) []browserRequest {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []browserRequest
	for _, id := range b.order {
		if r := b.requests[id]; r.url == rawURL {
			c := *r
			c.sentCookies = append([]string(nil), r.sentCookies...)
			out = append(out, c)
		}
	}
	return out
}

// consoleErrors returns the console errors and assertions, uncaught exceptions and error log
// entries seen so far.
func (b *browser) consoleErrors() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.errs...)
}

// noConsoleErrors fails the test if the tab reported any console error, or if a call of the
// pages under /api2 or /gatehouse was answered 404 (a wrong path) or 5xx: refusals the tests
// expect (401, 400) are theirs to check, those never are.
func (b *browser) noConsoleErrors(t *testing.T) {
	t.Helper()
	if errs := b.consoleErrors(); len(errs) > 0 {
		t.Errorf("browser console errors:\n  %s", strings.Join(errs, "\n  "))
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, id := range b.order {
		r := b.requests[id]
		ours := strings.HasPrefix(r.url, b.base+"/api2/") || strings.HasPrefix(r.url, b.base+"/gatehouse/")
		if ours && (r.status == http.StatusNotFound || r.status >= 500) {
			t.Errorf("the page's %s %s was answered %d", r.method, r.url, r.status)
		}
	}
}

// run runs actions on the tab within browserTimeout, failing the test with what on error.
func (b *browser) run(t *testing.T, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, browserTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		t.Fatalf("browser: %s: %v", what, err)
	}
}

// eval evaluates a JavaScript expression on the tab, awaiting a promise, and decodes the
// result into T.
func eval[T any](t *testing.T, b *browser, expr string) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, browserTimeout)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("browser: evaluating %q: %v", expr, err)
	}
	return v
}

// navigate loads path (relative to b.base, or an absolute URL) and waits for its body.
func (b *browser) navigate(t *testing.T, path string) {
	t.Helper()
	u := path
	if strings.HasPrefix(path, "/") {
		u = b.base + path
	}
	b.run(t, "navigating to "+u, chromedp.Navigate(u), chromedp.WaitReady(chromedp.CSS("body")))
}

var (
	unsafeName  = regexp.MustCompile(`[^A-Za-z0-9_.-]+`)
	tokenSecret = regexp.MustCompile(`"value":"[^"]*"`)
)

// screenshot saves a full-page PNG of the tab as <name>.png in the test's screenshot directory
// (a t.TempDir, or $GATEHOUSE_SCREENSHOTS/<test> to keep them) and logs its path. It fails the
// test when the page has no text or the image is undecodable or a single colour.
func (b *browser) screenshot(t *testing.T, name string) string {
	t.Helper()
	if text := eval[string](t, b, `document.body ? document.body.innerText : ''`); strings.TrimSpace(text) == "" {
		t.Errorf("screenshot %s: the page shows no text", name)
	}
	ctx, cancel := context.WithTimeout(b.ctx, browserTimeout)
	defer cancel()
	data, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	img, err := png.Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("screenshot %s: %d bytes, not a PNG: %v", name, len(data), err)
	}
	if singleColour(img) {
		t.Errorf("screenshot %s: %v image of a single colour (nothing rendered)", name, img.Bounds().Size())
	}
	b.mu.Lock()
	if b.shots == "" {
		if keep := os.Getenv("GATEHOUSE_SCREENSHOTS"); keep != "" {
			b.shots = filepath.Join(keep, unsafeName.ReplaceAllString(t.Name(), "_"))
		} else {
			b.shots = t.TempDir()
		}
	}
	dir := b.shots
	b.mu.Unlock()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, unsafeName.ReplaceAllString(name, "_")+".png")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot %s: %s (%v)", name, p, img.Bounds().Size())
	return p
}

// singleColour reports whether every pixel of img has the colour of the first one (or img is
// empty).
func singleColour(img image.Image) bool {
	r := img.Bounds()
	if r.Empty() {
		return true
	}
	r0, g0, b0, a0 := img.At(r.Min.X, r.Min.Y).RGBA()
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			if r1, g1, b1, a1 := img.At(x, y).RGBA(); r1 != r0 || g1 != g0 || b1 != b0 || a1 != a0 {
				return false
			}
		}
	}
	return true
}

// cookie returns the browser's cookie name for b.base, or nil.
func (b *browser) cookie(t *testing.T, name string) *network.Cookie {
	t.Helper()
	for _, c := range b.cookies(t) {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// cookies returns every cookie the browser holds for b.base, HttpOnly ones included (CDP sees
// them, page scripts do not).
func (b *browser) cookies(t *testing.T) []*network.Cookie {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, browserTimeout)
	defer cancel()
	res, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{b.base + "/"}})
	if err != nil {
		t.Fatalf("browser: Network.getCookies: %v", err)
	}
	return res.Cookies
}

// documentCookie returns document.cookie of the current page: what scripts can read.
func (b *browser) documentCookie(t *testing.T) string {
	t.Helper()
	return eval[string](t, b, `document.cookie`)
}

// virtualAuthenticator enables the WebAuthn domain and adds a CTAP2 platform authenticator
// with resident keys and user verification that always succeeds without a prompt; it returns
// the authenticator's id.
func (b *browser) virtualAuthenticator(t *testing.T) webauthn.AuthenticatorID {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, browserTimeout)
	defer cancel()
	if _, err := chromedp.Call(ctx, webauthn.Enable, webauthn.EnableParams{}); err != nil {
		t.Fatalf("browser: WebAuthn.enable: %v", err)
	}
	res, err := chromedp.Call(ctx, webauthn.AddVirtualAuthenticator, webauthn.AddVirtualAuthenticatorParams{
		Options: &webauthn.VirtualAuthenticatorOptions{
			Protocol:                    webauthn.AuthenticatorProtocolCtap2,
			Ctap2version:                webauthn.Ctap2versionCtap21,
			Transport:                   webauthn.AuthenticatorTransportInternal,
			HasResidentKey:              true,
			HasUserVerification:         true,
			IsUserVerified:              true,
			AutomaticPresenceSimulation: true,
		},
	})
	if err != nil {
		t.Fatalf("browser: WebAuthn.addVirtualAuthenticator: %v", err)
	}
	return res.AuthenticatorID
}

// credentials lists the credentials the virtual authenticator id holds.
func (b *browser) credentials(t *testing.T, id webauthn.AuthenticatorID) []*webauthn.Credential {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, browserTimeout)
	defer cancel()
	res, err := chromedp.Call(ctx, webauthn.GetCredentials, webauthn.GetCredentialsParams{AuthenticatorID: id})
	if err != nil {
		t.Fatalf("browser: WebAuthn.getCredentials: %v", err)
	}
	return res.Credentials
}

// login signs in on the login page the tab shows: it types the user name and password,
// selects the realm, presses the submit button and waits until the page has gone to another
// URL (the login page's "next", which may be the login page itself without the query). A
// refused login fails the test with the page's message.
func (b *browser) login(t *testing.T, user, password, realm string) {
	t.Helper()
	before := eval[string](t, b, `location.href`)
	b.fill(t, "#username", user)
	b.fill(t, "#password", password)
	b.run(t, "choosing the realm", chromedp.SetValue(chromedp.CSS("#realm"), realm))
	u := b.navigatingWhere(t, "leave "+before+" after logging in as "+user, func(u *url.URL) bool { return u.String() != before },
		chromedp.Click(chromedp.CSS(`#login button[type=submit]`)))
	t.Logf("logged in as %s, now at %s", user, u)
}

// TestBrowserWebauthnFeasibility shows a real browser can use WebAuthn on a proxyd page: over
// https://localhost with the certificate trusted by its key hash (a page with a certificate
// error would be refused), a virtual authenticator creates a credential for rp id localhost.
func TestBrowserWebauthnFeasibility(t *testing.T) {
	st := start(t, options{})
	b := newBrowser(t, st)
	b.navigate(t, "/gatehouse/login")
	if secure := eval[bool](t, b, `window.isSecureContext`); !secure {
		t.Fatalf("%s/gatehouse/login is not a secure context", b.base)
	}
	id := b.virtualAuthenticator(t)
	got := eval[string](t, b, `(async () => {
		const cred = await navigator.credentials.create({publicKey: {
			rp: {id: 'localhost', name: 'Gatehouse'},
			user: {id: new TextEncoder().encode('willa@pbs'), name: 'willa@pbs', displayName: 'Willa'},
			challenge: crypto.getRandomValues(new Uint8Array(32)),
			pubKeyCredParams: [{type: 'public-key', alg: -7}],
			authenticatorSelection: {residentKey: 'required', userVerification: 'required'},
			timeout: 10000,
		}});
		return cred.type + ' ' + cred.response.getTransports().join(',');
	})()`)
	if got != "public-key internal" {
		t.Errorf("navigator.credentials.create = %q; want a public-key credential over internal", got)
	}
	// The check can fail: a relying party id that is not this page's domain is refused.
	refused := eval[string](t, b, `navigator.credentials.create({publicKey: {
			rp: {id: 'example.com', name: 'Elsewhere'},
			user: {id: new Uint8Array([1]), name: 'x', displayName: 'x'},
			challenge: new Uint8Array(32),
			pubKeyCredParams: [{type: 'public-key', alg: -7}],
			timeout: 10000,
		}}).then(() => 'created', (e) => e.name)`)
	if refused != "SecurityError" {
		t.Errorf("navigator.credentials.create for rp id example.com = %q; want SecurityError", refused)
	}
	creds := b.credentials(t, id)
	if len(creds) != 1 || creds[0].RpID != "localhost" || string(creds[0].UserHandle) != "willa@pbs" || !creds[0].IsResidentCredential {
		t.Errorf("authenticator credentials = %+v; want one resident credential for localhost, willa@pbs", creds)
	}
	b.noConsoleErrors(t)
}

// TestBrowserLoginCookie logs in through the login page in a real browser: the ticket ends up
// in a host-only, Secure, HttpOnly, SameSite=Lax cookie that page scripts cannot read and that
// authenticates API calls.
func TestBrowserLoginCookie(t *testing.T) {
	st := start(t, options{})
	st.addUser(t, "willa@pbs", "willa-pass-1")
	b := newBrowser(t, st)
	b.navigate(t, "/gatehouse/login?next=/gatehouse/login")
	b.login(t, "willa@pbs", "willa-pass-1", "pbs")
	if at := eval[string](t, b, `location.href`); at != b.base+"/gatehouse/login" {
		t.Errorf("after login the page is %s; want %s/gatehouse/login (next)", at, b.base)
	}

	ticket := b.cookie(t, "__Host-PBSAuthCookie")
	if ticket == nil || ticket.Value == "" {
		t.Fatalf("the browser holds no __Host-PBSAuthCookie for %s: %+v", b.base, b.cookies(t))
	}
	if !ticket.HTTPOnly || !ticket.Secure || ticket.SameSite != network.CookieSameSiteLax || ticket.Path != "/" ||
		ticket.Domain != "localhost" || !ticket.Session {
		t.Errorf("ticket cookie httpOnly=%v secure=%v sameSite=%q path=%q domain=%q session=%v; want HttpOnly, Secure, Lax, /, host-only localhost, session",
			ticket.HTTPOnly, ticket.Secure, ticket.SameSite, ticket.Path, ticket.Domain, ticket.Session)
	}
	decoded, err := url.QueryUnescape(ticket.Value)
	if err != nil {
		decoded = ticket.Value
	}
	if !strings.HasPrefix(decoded, "PBS:willa@pbs:") {
		t.Errorf("ticket cookie value does not look like willa's ticket (%d bytes)", len(ticket.Value))
	}
	if dc := b.documentCookie(t); strings.Contains(dc, ticket.Value) || strings.Contains(dc, decoded) ||
		strings.Contains(dc, "PBS:") || strings.Contains(dc, "__Host-PBSAuthCookie") {
		t.Errorf("document.cookie exposes the ticket (%d bytes)", len(dc))
	}

	// The cookie is the credential: a plain client with it alone is willa.
	a := st.do(t, call{method: "GET", path: "/access/users/willa@pbs/token",
		header: http.Header{"Cookie": {"__Host-PBSAuthCookie=" + ticket.Value}}})
	if a.status != http.StatusOK {
		t.Errorf("GET /access/users/willa@pbs/token with the browser's cookie = %d %s; want 200", a.status, a.message)
	}
	if a := st.do(t, call{method: "GET", path: "/access/users/willa@pbs/token"}); a.status != http.StatusUnauthorized {
		t.Errorf("the same call without the cookie = %d; want 401", a.status)
	}
	b.screenshot(t, "after-login")
	b.noConsoleErrors(t)
}

// TestBrowserCrossSitePost has another site's page (same site, another port, so the Lax
// cookie is sent) submit a form to an API call that would create an API token. proxyd refuses
// it for want of a CSRF token, and the browser demonstrably sent the ticket cookie: the auth
// log names the user and the CSRF reason, which a request without the cookie does not give.
func TestBrowserCrossSitePost(t *testing.T) {
	st := start(t, options{})
	st.addUser(t, "willa@pbs", "willa-pass-1")
	b := newBrowser(t, st)

	target := b.base + "/api2/json/access/users/willa@pbs/token/evil"
	attack := b.attacker(t, st, target, map[string]string{"comment": "pwned"})
	csrfLine := "user=willa@pbs msg=missing or invalid CSRF prevention token"
	countCSRF := func() int { return strings.Count(strings.Join(st.authLogLines(t), "\n"), csrfLine) }

	// Control, not logged in: refused as well, but proxyd saw no ticket, so no CSRF failure.
	r := attack("without a session")
	if r.status != http.StatusUnauthorized || slices.Contains(r.sentCookies, "__Host-PBSAuthCookie") {
		t.Errorf("forged POST without a session = %d, cookies sent %v; want 401 and no ticket cookie", r.status, r.sentCookies)
	}
	if n := countCSRF(); n != 0 {
		t.Errorf("auth log has %d CSRF failures for willa before she logged in; want 0", n)
	}

	b.navigate(t, "/gatehouse/login?next=/gatehouse/login")
	b.login(t, "willa@pbs", "willa-pass-1", "pbs")

	r = attack("with a session")
	if r.status != http.StatusUnauthorized {
		t.Errorf("forged POST with willa's session = %d; want 401", r.status)
	}
	if !slices.Contains(r.sentCookies, "__Host-PBSAuthCookie") {
		t.Errorf("the browser did not send the ticket cookie on the same-site POST (sent %v): the test proves nothing", r.sentCookies)
	}
	if n := countCSRF(); n != 1 {
		t.Errorf("auth log has %d lines %q after the forged POST; want 1:\n%s", n, csrfLine, strings.Join(st.authLogLines(t), "\n"))
	}
	if text := eval[string](t, b, `document.body.innerText`); !strings.Contains(text, "authentication failure") {
		// An accepted POST shows the new token's secret: not in the log.
		t.Errorf("the browser shows %q; want proxyd's refusal", tokenSecret.ReplaceAllString(text, `"value":"<redacted>"`))
	}
	b.screenshot(t, "refused")

	// No token: the listing (as root@pam) would show it, as the control token shows.
	a := st.admin(t, call{method: "GET", path: "/access/users/willa@pbs/token"})
	if a.status != 200 || strings.Contains(string(a.data), "evil") {
		t.Errorf("willa's tokens after the forged POST = %d %s; want 200 without evil", a.status, a.data)
	}
	willa := st.login(t, "willa@pbs", "willa-pass-1")
	if a := st.do(t, call{method: "POST", path: "/access/users/willa@pbs/token/control", header: willa.header(true)}); a.status != 200 {
		t.Fatalf("creating a token with the CSRF token = %d %s", a.status, a.message)
	}
	if a := st.admin(t, call{method: "GET", path: "/access/users/willa@pbs/token"}); !strings.Contains(string(a.data), "control") {
		t.Errorf("the token listing %s does not show a created token: the check above proves nothing", a.data)
	}

	// Console: the refused navigations log their 401, and the browser's favicon request on
	// proxyd's JSON answer its 404 (no upstream); nothing else.
	for _, e := range b.consoleErrors() {
		if !(strings.Contains(e, "status of 401") && strings.Contains(e, target)) && !strings.Contains(e, "status of 404 () ("+b.base+"/favicon.ico)") {
			t.Errorf("unexpected console error: %s", e)
		}
	}
}

// attacker serves a page on https://localhost:<another port> (same-site with proxyd, so Lax
// cookies go along; the same certificate, so the browser trusts it the same way) that submits
// an HTML form of fields to target as soon as it loads. The function it returns opens that
// page in b and returns the browser's record of the forged POST navigation.
func (b *browser) attacker(t *testing.T, st *stack, target string, fields map[string]string) func(label string) browserRequest {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(st.dirs.ProxyCert(), st.dirs.ProxyKey())
	if err != nil {
		t.Fatal(err)
	}
	var inputs strings.Builder
	for k, v := range fields {
		fmt.Fprintf(&inputs, `<input type="hidden" name="%s" value="%s">`, html.EscapeString(k), html.EscapeString(v))
	}
	evil := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, `<!doctype html><title>Win a prize</title><body><p>Loading your prize…</p>
<form id="f" method="post" action="%s" enctype="application/x-www-form-urlencoded">%s</form>
<script>document.getElementById('f').submit();</script>`, html.EscapeString(target), inputs.String())
	}))
	evil.TLS = &tls.Config{Certificates: []tls.Certificate{pair}}
	evil.StartTLS()
	t.Cleanup(evil.Close)
	_, port, _ := net.SplitHostPort(evil.Listener.Addr().String())
	prize := "https://localhost:" + port + "/prize"
	return func(label string) browserRequest {
		t.Helper()
		ctx, cancel := context.WithTimeout(b.ctx, browserTimeout)
		defer cancel()
		_, err := chromedp.Run(ctx, chromedp.WaitEvent(page.FrameNavigated, func(ev page.EventFrameNavigated) bool {
			return ev.Frame.ParentID == "" && ev.Frame.URL == target
		}, chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			_, err := cdp.Call(ctx, tg, page.Navigate, page.NavigateParams{URL: prize})
			return err
		})))
		if err != nil {
			t.Fatalf("%s: the attacker page did not post to %s: %v", label, target, err)
		}
		b.run(t, label+": waiting for the answer page", chromedp.WaitReady(chromedp.CSS("body")))
		reqs := b.requestsTo(target)
		if len(reqs) == 0 || reqs[len(reqs)-1].method != "POST" || !reqs[len(reqs)-1].docType {
			t.Fatalf("%s: the browser's requests to the target: %+v; want a POST navigation", label, reqs)
		}
		return reqs[len(reqs)-1]
	}
}

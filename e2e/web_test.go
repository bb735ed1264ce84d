package e2e

// The web pages (gateway/web) in a real headless Chromium against real daemons: sign-in with
// each second factor, the account page's password, token and TFA management, sign-out, an
// expired session, keyboard use and labels. The harness (newBrowser and friends) is in
// browser_test.go.

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	cdpbrowser "github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"gatehouse/ticket"
)

// fill replaces the value of the input sel with text, typed as keys.
func (b *browser) fill(t *testing.T, sel, text string) {
	t.Helper()
	b.run(t, "clearing "+sel, chromedp.WaitVisible(chromedp.CSS(sel)))
	eval[bool](t, b, fmt.Sprintf(`(document.querySelector(%s).value = '') === ''`, jsString(sel)))
	b.run(t, "typing into "+sel, chromedp.SendKeys(chromedp.CSS(sel), text))
}

// click clicks the visible element sel.
func (b *browser) click(t *testing.T, sel string) {
	t.Helper()
	b.run(t, "clicking "+sel, chromedp.WaitVisible(chromedp.CSS(sel)), chromedp.Click(chromedp.CSS(sel)))
}

// navigating runs act (a click, a key) and waits until the tab's main frame has navigated
// to a URL whose path is path; it returns that URL.
func (b *browser) navigating(t *testing.T, path string, act chromedp.Action[chromedp.Void]) *url.URL {
	t.Helper()
	return b.navigatingWhere(t, "reach "+path, func(u *url.URL) bool { return u.Path == path }, act)
}

// navigatingWhere runs act and waits until the tab's main frame has navigated to a URL that
// match accepts, then for its body; it returns that URL. On a timeout the test fails with
// what the tab shows.
func (b *browser) navigatingWhere(t *testing.T, what string, match func(*url.URL) bool, act chromedp.Action[chromedp.Void]) *url.URL {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, browserTimeout)
	defer cancel()
	wait := func() (page.EventFrameNavigated, error) {
		return chromedp.Run(ctx, chromedp.WaitEvent(page.FrameNavigated, func(ev page.EventFrameNavigated) bool {
			u, err := url.Parse(ev.Frame.URL)
			return ev.Frame.ParentID == "" && err == nil && match(u)
		}, act))
	}
	nav, err := wait()
	if err != nil && strings.Contains(err.Error(), "Could not find node with given id") {
		// act looked its element up in chromedp's copy of the DOM while that still held the
		// previous page's nodes (a navigation just before); nothing was clicked. Once the
		// current document has loaded, the copy is current: try once more.
		b.waitJS(t, "the page to load", `document.readyState === 'complete'`)
		nav, err = wait()
	}
	if err != nil {
		c2, cancel2 := context.WithTimeout(b.ctx, 5*time.Second)
		shows, _ := chromedp.Run(c2, chromedp.Evaluate[string](`location.href + ": " + document.body.innerText`))
		cancel2()
		t.Fatalf("browser: waiting to %s: %v; the tab shows %q", what, err, shows)
	}
	b.run(t, "waiting for the page at "+nav.Frame.URL, chromedp.WaitReady(chromedp.CSS("body")))
	u, _ := url.Parse(nav.Frame.URL)
	return u
}

// waitJS waits until the JavaScript expression cond is true on the current page (checked
// every 50 ms, within browserTimeout), failing the test with what.
func (b *browser) waitJS(t *testing.T, what, cond string) {
	t.Helper()
	js := fmt.Sprintf(`new Promise((resolve, reject) => {
		const until = Date.now() + %d;
		const check = () => {
			let ok = false;
			try { ok = !!(%s); } catch (e) {}
			if (ok) resolve(true);
			else if (Date.now() > until) reject(new Error('timed out'));
			else setTimeout(check, 50);
		};
		check();
	})`, (browserTimeout - 5*time.Second).Milliseconds(), cond)
	ctx, cancel := context.WithTimeout(b.ctx, browserTimeout)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](js, chromedp.EvalAwaitPromise)); err != nil {
		shows, _ := chromedp.Run(b.ctx, chromedp.Evaluate[string](`document.body.innerText`))
		t.Fatalf("browser: waiting for %s (%s): %v; the page shows %q", what, cond, err, shows)
	}
}

// text returns the text content of sel.
func (b *browser) text(t *testing.T, sel string) string {
	t.Helper()
	js, _ := json.Marshal(sel)
	return eval[string](t, b, fmt.Sprintf(`(document.querySelector(%s) || {textContent: ''}).textContent`, js))
}

// sessionTicket returns the __Host-PBSAuthCookie value the browser holds, or "".
func (b *browser) sessionTicket(t *testing.T) string {
	t.Helper()
	if c := b.cookie(t, "__Host-PBSAuthCookie"); c != nil {
		return c.Value
	}
	return ""
}

// status is what GET /api2/json/version answers a ticket cookie (200: a working session).
func (st *stack) ticketStatus(t *testing.T, tk string) int {
	t.Helper()
	return st.do(t, call{method: "GET", path: "/version", header: http.Header{"Cookie": {"__Host-PBSAuthCookie=" + tk}}}).status
}

// signIn opens the login page and signs in with a password; the account page must follow.
func (b *browser) signIn(t *testing.T, user, password string) {
	t.Helper()
	b.navigate(t, "/gatehouse/login")
	b.login(t, user, password, "pbs")
	if at := eval[string](t, b, `location.pathname`); at != "/gatehouse/account" {
		t.Fatalf("signing in as %s led to %s; want %s", user, at, "/gatehouse/account")
	}
	b.waitJS(t, "the account page with its lists loaded", `document.querySelector('#user').textContent === `+jsString(user)+
		` && !document.querySelector('[aria-busy=true]')`)
	if errs := b.text(t, "#token-table-error") + b.text(t, "#tfa-list-error"); errs != "" {
		t.Fatalf("the account page could not load its lists: %s", errs)
	}
}

func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// qrText decodes the QR code shown in the image element sel (a data: URL) with zbarimg, a
// real peer, as a phone's camera would.
func (b *browser) qrText(t *testing.T, sel string) string {
	t.Helper()
	tool := requireTool(t, "zbarimg", "zbar-tools")
	src := eval[string](t, b, fmt.Sprintf(`document.querySelector(%s).src`, jsString(sel)))
	b64, ok := strings.CutPrefix(src, "data:image/png;base64,")
	if !ok {
		t.Fatalf("%s is %.40q; want a PNG data: URL", sel, src)
	}
	img, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		t.Fatalf("%s: %v", sel, err)
	}
	file := filepath.Join(t.TempDir(), "qr.png")
	if err := os.WriteFile(file, img, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(tool, "-q", "--raw", file).Output()
	if err != nil {
		t.Fatalf("zbarimg %s: %v", file, err)
	}
	return strings.TrimSpace(string(out))
}

// labelled fails the test when an input or select of the page has no label.
func (b *browser) labelled(t *testing.T, page string) {
	t.Helper()
	missing := eval[[]string](t, b, `[...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
		.filter((el) => el.labels.length === 0).map((el) => el.id || el.name || el.outerHTML)`)
	if len(missing) > 0 {
		t.Errorf("%s: inputs without a label: %v", page, missing)
	}
}

// TestWebTOTP: sign in, enrol an authenticator app from the QR code's key, sign out (the
// cookie goes, the old ticket is refused), then sign in with the second step: a wrong code is
// shown next to the field, the right one signs in. Recovery codes are made and one signs in.
func TestWebTOTP(t *testing.T) {
	st := start(t, options{})
	st.addUser(t, "tess@pbs", "tess-pass-1")
	b := newBrowser(t, st)

	b.signIn(t, "tess@pbs", "tess-pass-1")
	b.labelled(t, "account page")
	b.screenshot(t, "account")
	first := b.sessionTicket(t)
	if first == "" || strings.Contains(b.documentCookie(t), first) || strings.Contains(b.documentCookie(t), "PBS:") {
		t.Fatalf("after sign-in: cookie %q, document.cookie %q", first, b.documentCookie(t))
	}

	// Enrolment: the current password is asked first.
	b.click(t, "#totp-start")
	b.waitJS(t, "the QR code", `document.querySelector('#totp-qr').naturalWidth > 0 && !document.querySelector('#totp-form').hidden`)
	b.screenshot(t, "account-totp-qr")
	// The QR code holds the otpauth URI of the key shown beside it.
	shown := strings.ReplaceAll(b.text(t, "#totp-secret"), " ", "")
	uri, err := url.Parse(b.qrText(t, "#totp-qr"))
	if err != nil || uri.Scheme != "otpauth" || uri.Host != "totp" || uri.Path != "/Gatehouse:tess@pbs" {
		t.Fatalf("QR code = %v (%v); want otpauth://totp/Gatehouse:tess@pbs", uri, err)
	}
	q := uri.Query()
	if q.Get("secret") != shown || q.Get("issuer") != "Gatehouse" || q.Get("period") != "30" || q.Get("digits") != "6" {
		t.Fatalf("QR code query %v; want the shown key %s, issuer Gatehouse, 30 s, 6 digits", q, shown)
	}
	key := otpKey{shown}
	step := time.Now().Unix() / totpPeriod
	b.fill(t, "#totp-value", key.code(t, step))
	b.click(t, "#totp-form button[type=submit]")
	b.waitJS(t, "the password error", `document.querySelector('#tfa-password-error').textContent !== ''`)
	b.fill(t, "#tfa-password", "wrong-pass-1")
	b.click(t, "#totp-form button[type=submit]")
	b.waitJS(t, "wrong password", `document.querySelector('#tfa-password-error').textContent === 'Wrong password.'`)
	b.fill(t, "#tfa-password", "tess-pass-1")
	b.click(t, "#totp-form button[type=submit]")
	b.waitJS(t, "the new factor in the list", `document.querySelector('#tfa-list [data-type=totp]')`)

	// Recovery codes, shown once.
	b.fill(t, "#tfa-password", "tess-pass-1")
	b.click(t, "#recovery-generate")
	b.waitJS(t, "the recovery codes", `!document.querySelector('#recovery-box').hidden`)
	codes := strings.Fields(b.text(t, "#recovery-codes"))
	if len(codes) != 10 {
		t.Fatalf("recovery codes shown: %q; want 10", codes)
	}
	b.screenshot(t, "account-recovery")

	// Sign out: the cookie is gone and its ticket no longer works anywhere.
	if st.ticketStatus(t, first) != 200 {
		t.Fatal("the session ticket does not work before sign-out")
	}
	u := b.navigating(t, "/gatehouse/login", chromedp.Click(chromedp.CSS("#logout")))
	if u.Query().Get("reason") != "logout" || !strings.Contains(b.text(t, "#notice"), "signed out") {
		t.Errorf("after sign-out: %s, notice %q", u, b.text(t, "#notice"))
	}
	if tk := b.sessionTicket(t); tk != "" {
		t.Errorf("the session cookie is still there after sign-out")
	}
	if s := st.ticketStatus(t, first); s != 401 {
		t.Errorf("the old ticket after sign-out = %d; want 401", s)
	}
	b.screenshot(t, "login-signed-out")

	// Second step with TOTP: a wrong code first, then the next step's code (the enrolment
	// code is spent; one step of skew is allowed).
	b.fill(t, "#username", "tess@pbs")
	b.fill(t, "#password", "tess-pass-1")
	b.click(t, "#login button[type=submit]")
	b.waitJS(t, "the second step", `!document.querySelector('#tfa').hidden && !document.querySelector('#tfa-totp').hidden`)
	if got := eval[string](t, b, `document.activeElement.id`); got != "totp-code" {
		t.Errorf("focus on the second step is on %q; want totp-code", got)
	}
	if !eval[bool](t, b, `document.querySelector('#tfa-webauthn').hidden && !document.querySelector('#tfa-recovery').hidden`) {
		t.Error("the second step offers other factors than TOTP and recovery")
	}
	b.labelled(t, "second step")
	b.screenshot(t, "login-tfa")
	b.fill(t, "#totp-code", key.wrongCodes(t, step, 1)[0])
	b.click(t, "#tfa-totp button[type=submit]")
	b.waitJS(t, "the code error", `document.querySelector('#totp-code-error').textContent !== '' && document.querySelector('#totp-code').getAttribute('aria-invalid') === 'true'`)
	// The next step's code, or the current one if time has moved on past it.
	b.fill(t, "#totp-code", key.code(t, max(step+1, time.Now().Unix()/totpPeriod)))
	b.navigating(t, "/gatehouse/account", chromedp.Click(chromedp.CSS("#tfa-totp button[type=submit]")))
	second := b.sessionTicket(t)
	if second == "" || second == first || st.ticketStatus(t, second) != 200 {
		t.Fatalf("the TOTP sign-in gave no working session cookie")
	}

	// A recovery code signs in too, once.
	b.navigating(t, "/gatehouse/login", chromedp.Click(chromedp.CSS("#logout")))
	b.fill(t, "#username", "tess@pbs")
	b.fill(t, "#password", "tess-pass-1")
	b.click(t, "#login button[type=submit]")
	b.waitJS(t, "the second step", `!document.querySelector('#tfa-recovery').hidden`)
	b.fill(t, "#recovery-code", codes[3])
	b.navigating(t, "/gatehouse/account", chromedp.Click(chromedp.CSS("#tfa-recovery button[type=submit]")))
	b.noConsoleErrors(t)
}

// TestWebWebauthn: register a security key on the account page through the DevTools virtual
// authenticator, then sign in with it.
func TestWebWebauthn(t *testing.T) {
	st := start(t, options{})
	st.addUser(t, "walt@pbs", "walt-pass-1")
	b := newBrowser(t, st)
	if a := st.admin(t, call{method: "PUT", path: "/config/access/tfa/webauthn",
		form: url.Values{"rp": {"Gatehouse"}, "id": {"localhost"}, "origin": {b.base}}}); a.status != 200 {
		t.Fatalf("configuring webauthn = %d %s", a.status, a.message)
	}
	auth := b.virtualAuthenticator(t)

	b.signIn(t, "walt@pbs", "walt-pass-1")
	b.fill(t, "#tfa-password", "walt-pass-1")
	b.fill(t, "#webauthn-description", "Virtual key")
	b.click(t, "#webauthn-form button[type=submit]")
	b.waitJS(t, "the key in the list", `document.querySelector('#tfa-list [data-type=webauthn]')`)
	if n := len(b.credentials(t, auth)); n != 1 {
		t.Fatalf("the virtual authenticator holds %d credentials; want 1", n)
	}
	if got := b.text(t, "#tfa-list [data-type=webauthn] span"); !strings.Contains(got, "Virtual key") {
		t.Errorf("list entry = %q", got)
	}
	b.screenshot(t, "account-webauthn")

	b.navigating(t, "/gatehouse/login", chromedp.Click(chromedp.CSS("#logout")))
	b.fill(t, "#username", "walt@pbs")
	b.fill(t, "#password", "walt-pass-1")
	b.click(t, "#login button[type=submit]")
	b.waitJS(t, "the security key step", `!document.querySelector('#tfa-webauthn').hidden`)
	if !eval[bool](t, b, `document.querySelector('#tfa-totp').hidden`) {
		t.Error("the second step offers TOTP to a user without it")
	}
	b.screenshot(t, "login-webauthn")
	b.navigating(t, "/gatehouse/account", chromedp.Click(chromedp.CSS("#webauthn-button")))
	if tk := b.sessionTicket(t); tk == "" || st.ticketStatus(t, tk) != 200 {
		t.Fatal("the WebAuthn sign-in gave no working session cookie")
	}
	b.noConsoleErrors(t)
}

// TestWebTokensAndPassword: the account page of a user whose name holds "!", '"' and "<"
// generates, rotates and removes the user's own token (each secret works at once; a rotated one stops at once), copies a secret, and changes
// the password with errors next to the fields.
func TestWebTokensAndPassword(t *testing.T) {
	st := start(t, options{})
	// A user name with "!" (the token name follows the last one) and HTML's special characters.
	const tina = `t!n"a<b>@pbs`
	st.addUser(t, tina, "tina-pass-1")
	b := newBrowser(t, st)
	ctx, cancel := context.WithTimeout(b.ctx, browserTimeout)
	defer cancel()
	for _, name := range []string{"clipboard-read", "clipboard-write"} {
		if _, err := chromedp.CallBrowser(ctx, cdpbrowser.SetPermission, cdpbrowser.SetPermissionParams{Origin: b.base,
			Permission: &cdpbrowser.PermissionDescriptor{Name: name}, Setting: cdpbrowser.PermissionSettingGranted}); err != nil {
			t.Fatalf("granting %s: %v", name, err)
		}
	}
	b.signIn(t, tina, "tina-pass-1")
	tokenStatus := func(secret string) int {
		return st.do(t, call{method: "GET", path: "/access/users/" + url.PathEscape(tina) + "/token", header: http.Header{"Authorization": {"PBSAPIToken=" + tina + "!ci:" + secret}}}).status
	}

	// A bad name is refused next to the field, before any request.
	b.fill(t, "#token-name", "-bad")
	b.click(t, "#token-form button[type=submit]")
	b.waitJS(t, "the name error", `document.querySelector('#token-name-error').textContent !== ''`)
	b.fill(t, "#token-name", "ci")
	b.fill(t, "#token-comment", "build server")
	b.click(t, "#token-form button[type=submit]")
	b.waitJS(t, "the secret", `!document.querySelector('#secret-box').hidden && document.querySelector('#token-rows [data-token=ci]')`)
	secret1 := b.text(t, "#secret-value")
	if tokenStatus(secret1) != 200 {
		t.Fatalf("the generated secret does not work")
	}
	b.click(t, "#secret-copy")
	b.waitJS(t, "the copy", `document.querySelector('#secret-copied').textContent !== ''`)
	if got := eval[string](t, b, `navigator.clipboard.readText()`); got != secret1 {
		t.Errorf("clipboard = %q; want the secret", got)
	}
	b.screenshot(t, "account-token")

	// Rotate: asks first, then the old secret is refused and the new one works.
	b.click(t, "#token-rows [data-token=ci] button.rotate")
	b.click(t, "#token-rows [data-token=ci] td.actions button:not(.secondary)")
	b.waitJS(t, "the new secret", `document.querySelector('#secret-value').textContent !== `+jsString(secret1))
	secret2 := b.text(t, "#secret-value")
	if tokenStatus(secret1) != 401 || tokenStatus(secret2) != 200 {
		t.Errorf("after rotation: old secret %d, new %d; want 401, 200", tokenStatus(secret1), tokenStatus(secret2))
	}
	b.click(t, "#token-rows [data-token=ci] button.remove")
	b.click(t, "#token-rows [data-token=ci] td.actions button:not(.secondary)")
	b.waitJS(t, "the removal", `!document.querySelector('#token-rows [data-token=ci]') && !document.querySelector('#token-empty').hidden`)
	if tokenStatus(secret2) != 401 {
		t.Error("a removed token still works")
	}

	// Password: mismatch, wrong current password, then the change.
	b.fill(t, "#current-password", "tina-pass-1")
	b.fill(t, "#new-password", "tina-pass-2")
	b.fill(t, "#confirm-password", "tina-pass-3")
	b.click(t, "#password-form button[type=submit]")
	b.waitJS(t, "the mismatch", `document.querySelector('#confirm-password-error').textContent !== ''`)
	b.fill(t, "#current-password", "not-my-pass")
	b.fill(t, "#confirm-password", "tina-pass-2")
	b.click(t, "#password-form button[type=submit]")
	b.waitJS(t, "wrong password", `document.querySelector('#current-password-error').textContent === 'Wrong password.'`)
	b.screenshot(t, "account-password-error")
	b.fill(t, "#current-password", "tina-pass-1")
	b.click(t, "#password-form button[type=submit]")
	b.waitJS(t, "the change", `document.querySelector('#status').textContent.includes('Password changed')`)
	if a := st.do(t, call{method: "POST", path: "/access/ticket", form: url.Values{"username": {tina}, "password": {"tina-pass-2"}}}); a.status != 200 {
		t.Errorf("sign-in with the new password = %d", a.status)
	}
	// The page's own session goes on with the ticket proxyd set on the change.
	if tk := b.sessionTicket(t); st.ticketStatus(t, tk) != 200 {
		t.Error("the session that changed the password ended")
	}
	b.noConsoleErrors(t)
}

// TestWebSessionEnds: an expired ticket cookie sends the account page to the login page with
// a message; a session ended elsewhere while the page is open does so at the next action.
func TestWebSessionEnds(t *testing.T) {
	st := start(t, options{})
	st.addUser(t, "eve@pbs", "eve-pass-1")
	b := newBrowser(t, st)

	// An expired ticket (signed by the stack's key 3 h ago) in the cookie.
	signer, err := ticket.LoadSigner(st.dirs.AuthKey())
	if err != nil {
		t.Fatal(err)
	}
	old, err := signer.SignUser("PBS", "eve@pbs", time.Now().Add(-3*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	b.navigate(t, "/gatehouse/login")
	ctx, cancel := context.WithTimeout(b.ctx, browserTimeout)
	defer cancel()
	yes := true
	if _, err := chromedp.Call(ctx, network.SetCookie, network.SetCookieParams{Name: "__Host-PBSAuthCookie", Value: old,
		URL: b.base + "/", Secure: &yes, HTTPOnly: &yes, SameSite: network.CookieSameSiteLax}); err != nil {
		t.Fatalf("setting the cookie: %v", err)
	}
	u := b.navigating(t, "/gatehouse/login", chromedp.Navigate(b.base+"/gatehouse/account"))
	if u.Query().Get("reason") != "expired" || u.Query().Get("next") != "/gatehouse/account" {
		t.Errorf("the account page with an expired ticket went to %s", u)
	}
	if got := b.text(t, "#notice"); !strings.Contains(got, "expired") {
		t.Errorf("notice = %q", got)
	}
	b.screenshot(t, "login-expired")

	// Without any cookie: the login page, no message.
	if _, err := chromedp.Call(ctx, network.DeleteCookies, network.DeleteCookiesParams{Name: "__Host-PBSAuthCookie", URL: b.base + "/"}); err != nil {
		t.Fatal(err)
	}
	u = b.navigating(t, "/gatehouse/login", chromedp.Navigate(b.base+"/gatehouse/account"))
	if u.Query().Get("reason") != "" || !eval[bool](t, b, `document.querySelector('#notice').hidden`) {
		t.Errorf("the account page without a cookie went to %s with notice %q", u, b.text(t, "#notice"))
	}

	// Ended elsewhere: an administrator sets a new password, which revokes eve's tickets.
	b.signIn(t, "eve@pbs", "eve-pass-1")
	if a := st.admin(t, call{method: "PUT", path: "/access/password", form: url.Values{"userid": {"eve@pbs"}, "password": {"eve-pass-2"}}}); a.status != 200 {
		t.Fatalf("password reset = %d %s", a.status, a.message)
	}
	b.fill(t, "#token-name", "late")
	u = b.navigating(t, "/gatehouse/login", chromedp.Click(chromedp.CSS("#token-form button[type=submit]")))
	if u.Query().Get("reason") != "expired" || !strings.Contains(b.text(t, "#notice"), "expired") {
		t.Errorf("after the session ended: %s, notice %q", u, b.text(t, "#notice"))
	}
	if a := st.admin(t, call{method: "GET", path: "/access/users/eve@pbs/token"}); string(a.data) != "[]" {
		t.Errorf("tokens after the refused call: %s", a.data)
	}
	b.noConsoleErrors(t)
}

// TestWebKeyboard: the login page works from the keyboard alone: focus starts in the user
// name, Tab moves on, Enter submits; an empty field is reported next to it.
func TestWebKeyboard(t *testing.T) {
	st := start(t, options{})
	st.addUser(t, "kim@pbs", "kim-pass-1")
	b := newBrowser(t, st)
	b.navigate(t, "/gatehouse/login")
	b.labelled(t, "login page")
	b.screenshot(t, "login")
	if got := eval[string](t, b, `document.activeElement.id`); got != "username" {
		t.Fatalf("focus starts on %q; want username", got)
	}
	b.run(t, "typing the user name and Enter", chromedp.KeyEvent("kim@pbs"), chromedp.KeyEvent(kb.Enter))
	b.waitJS(t, "the empty password error", `document.querySelector('#password-error').textContent === 'Required.' && document.activeElement.id === 'password'`)
	b.run(t, "typing a wrong password", chromedp.KeyEvent("nope"), chromedp.KeyEvent(kb.Enter))
	b.waitJS(t, "the failure", `document.querySelector('#login-error').textContent.includes('wrong user name')`)
	b.screenshot(t, "login-failed")
	// The failure leaves the focus in the password; Tab goes on to the realm.
	b.run(t, "tabbing", chromedp.KeyEvent(kb.Tab))
	if got := eval[string](t, b, `document.activeElement.id`); got != "realm" {
		t.Errorf("Tab from the password lands on %q; want realm", got)
	}
	// Shift-Tab back to the password, which selects its text, so typing replaces it.
	b.run(t, "shift-tabbing", chromedp.KeyEvent(kb.Tab, chromedp.KeyModifiers(chromedp.ModifierShift)))
	if got := eval[string](t, b, `document.activeElement.id`); got != "password" {
		t.Errorf("Shift-Tab from the realm lands on %q; want password", got)
	}
	b.run(t, "typing the password", chromedp.KeyEvent("kim-pass-1"))
	b.navigating(t, "/gatehouse/account", chromedp.KeyEvent(kb.Enter))
	b.noConsoleErrors(t)
}

// TestWebLoginCSRF: another site's form that posts the attacker's own credentials to the
// ticket call with http-only=1 would sign the victim's browser in to the attacker's account
// (login CSRF). proxyd refuses it, sets no cookie, and the same request from the login page's
// origin still works.
func TestWebLoginCSRF(t *testing.T) {
	st := start(t, options{})
	st.addUser(t, "mallory@pbs", "mallory-pass-1")
	b := newBrowser(t, st)
	target := b.base + "/api2/json/access/ticket"
	attack := b.attacker(t, st, target, map[string]string{"username": "mallory@pbs", "password": "mallory-pass-1", "http-only": "1"})
	r := attack("login CSRF")
	if r.status != http.StatusForbidden {
		t.Errorf("cross-site ticket POST = %d; want 403", r.status)
	}
	if tk := b.sessionTicket(t); tk != "" {
		t.Errorf("the browser holds a session cookie after the cross-site login: %.20s...", tk)
	}
	// From proxyd's own page the same credentials sign in.
	b.signIn(t, "mallory@pbs", "mallory-pass-1")
	b.noConsoleErrors(t)
}

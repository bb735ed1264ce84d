package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"
)

// TestBodyLimit (issue 18: a 100 KB comment or a 1 MB password answered 502 "authentication
// service unavailable", proxyd logging "request body too large"): a body over 64 KiB, to a call
// proxyd forwards to apid or to the ticket call proxyd reads itself, as a form or JSON, with its
// length announced or sent chunked, is 413 "request body over 65536 bytes". Nothing is counted
// as apid's failure, nothing is logged as an error, and the same client's next call works.
func TestBodyLimit(t *testing.T) {
	st := start(t, options{})
	st.addUser(t, "big@pbs", "big-pw")
	sess := st.login(t, "big@pbs", "big-pw")
	comment := strings.Repeat("c", 100<<10)
	password := strings.Repeat("p", 1<<20)
	jsonBody := func(kv ...string) string {
		m := map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		b, _ := json.Marshal(m)
		return string(b)
	}
	const want = "request body over 65536 bytes"
	for _, tc := range []struct {
		name, method, path, ctype, body string
		chunked                         bool
		header                          http.Header
	}{
		{"forwarded, 100 KB comment, form", "PUT", "/access/users/big@pbs", "application/x-www-form-urlencoded", url.Values{"comment": {comment}}.Encode(), false, sess.header(true)},
		{"forwarded, 100 KB comment, JSON", "PUT", "/access/users/big@pbs", "application/json", jsonBody("comment", comment), false, sess.header(true)},
		{"forwarded, 100 KB comment, chunked", "PUT", "/access/users/big@pbs", "application/x-www-form-urlencoded", url.Values{"comment": {comment}}.Encode(), true, sess.header(true)},
		{"forwarded, 1 MB password", "PUT", "/access/password", "application/x-www-form-urlencoded", url.Values{"userid": {"big@pbs"}, "password": {password}, "confirmation-password": {"big-pw"}}.Encode(), false, sess.header(true)},
		{"ticket, 1 MB password, form", "POST", "/access/ticket", "application/x-www-form-urlencoded", url.Values{"username": {"big@pbs"}, "password": {password}}.Encode(), false, nil},
		{"ticket, 1 MB password, JSON", "POST", "/access/ticket", "application/json", jsonBody("username", "big@pbs", "password", password), false, nil},
		{"ticket, 100 KB password, chunked", "POST", "/access/ticket", "", url.Values{"username": {"big@pbs"}, "password": {comment}}.Encode(), true, nil},
	} {
		var body io.Reader = strings.NewReader(tc.body)
		if tc.chunked {
			body = struct{ io.Reader }{body} // no length: sent chunked
		}
		req, err := http.NewRequest(tc.method, st.url+tc.path, body)
		if err != nil {
			t.Fatal(err)
		}
		for k, vs := range tc.header {
			req.Header[k] = vs
		}
		if tc.ctype != "" {
			req.Header.Set("Content-Type", tc.ctype)
		}
		resp, err := st.http.Do(req)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		var out struct{ Message string }
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		json.Unmarshal(raw, &out)
		if resp.StatusCode != http.StatusRequestEntityTooLarge || out.Message != want {
			t.Errorf("%s: %s %s with a %d-byte body = %d %q; want 413 %q", tc.name, tc.method, tc.path, len(tc.body), resp.StatusCode, raw, want)
		}
	}
	if a := st.do(t, call{method: "PUT", path: "/access/users/big@pbs", form: url.Values{"comment": {"small"}}, header: sess.header(true)}); a.status != 200 {
		t.Errorf("a small update after the large ones = %d %q; want 200", a.status, a.message)
	}
	st.login(t, "big@pbs", "big-pw")
	m := st.scrape(t)
	for _, reason := range []string{"timeout", "unreachable", "broken", "invalid"} {
		if got := m.get("gatehouse_apid_failures_total", "reason", reason); got != 0 {
			t.Errorf("gatehouse_apid_failures_total{reason=%s} = %v after bodies over the limit; want 0", reason, got)
		}
	}
	if log := st.logs["proxyd"].String(); strings.Contains(log, "level=ERROR") {
		t.Errorf("proxyd logged an error for bodies over the limit:\n%s", log)
	}
}

// TestBrokenConfigLoggedOnce (issue 18: a corrupt token.shadow logged one ERROR line per
// request, 66 451 lines in 3 s). token.shadow is corrupted by hand under a stream of token
// requests: every request is 500 and counted in gatehouse_config_errors_total{file=
// "token.shadow"}, and proxyd logs one line; the file fixed, tokens work again; corrupted
// again, one more line. The same for user.cfg under ticket requests.
func TestBrokenConfigLoggedOnce(t *testing.T) {
	st := start(t, options{})
	st.addUser(t, "cfg@pbs", "cfg-pw")
	sess := st.login(t, "cfg@pbs", "cfg-pw")
	tokenHeader := http.Header{"Authorization": {"PBSAPIToken=cfg@pbs!tok:" + st.addToken(t, "cfg@pbs", "tok")}}
	const line = `msg="config file broken: requests that need it fail until it is fixed"`
	for _, tc := range []struct {
		file, path string
		header     http.Header
	}{
		{"token.shadow", st.dirs.TokenShadow(), tokenHeader},
		{"user.cfg", st.dirs.UserCfg(), sess.header(false)},
	} {
		good := mustRead(t, tc.path)
		// write changes the file in place, as an editor without a backup does: the mode and the
		// owner stay, the identity (size, mtime, ctime) changes.
		write := func(data string) {
			t.Helper()
			if err := os.WriteFile(tc.path, []byte(data), 0); err != nil {
				t.Fatal(err)
			}
		}
		status := func() int { return st.versionWith(t, tc.header) }
		// until sends requests until one answers want (the caches notice an edit within a
		// 250 ms poll), then n more, each of which must answer want; it returns how many
		// answered 500.
		until := func(want, n int) (failed int) {
			t.Helper()
			deadline := time.Now().Add(10 * time.Second)
			for s := status(); s != want; s = status() {
				if s == 500 {
					failed++
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s: requests still answer %d after 10 s; want %d", tc.file, s, want)
				}
			}
			if want == 500 {
				failed++
			}
			for range n {
				if s := status(); s != want {
					t.Fatalf("%s: a request answered %d; want %d", tc.file, s, want)
				} else if s == 500 {
					failed++
				}
			}
			return failed
		}
		lines := func() int { return strings.Count(st.logs["proxyd"].String(), line+" file="+tc.file) }
		total := until(200, 5)
		write(`{"cfg@pbs!tok": `)
		total += until(500, 200)
		if n := lines(); n != 1 {
			t.Errorf("%s broken: %d log lines after %d failed requests; want 1", tc.file, n, total)
		}
		write(string(good))
		total += until(200, 20)
		write("{broken again")
		total += until(500, 100)
		if n := lines(); n != 2 {
			t.Errorf("%s fixed and broken again: %d log lines in all; want 2", tc.file, n)
		}
		if got := st.scrape(t).get("gatehouse_config_errors_total", "file", tc.file); got != float64(total) {
			t.Errorf("gatehouse_config_errors_total{file=%s} = %v; want %d, the requests answered 500", tc.file, got, total)
		} else {
			t.Logf("%s: %d requests answered 500 and counted, %d log lines", tc.file, total, lines())
		}
		write(string(good))
		until(200, 1)
	}
}

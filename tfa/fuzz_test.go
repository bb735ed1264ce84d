package tfa

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
	"time"
)

// FuzzParse: Parse refuses with ErrSyntax or accepts, and what it accepts encodes to a file
// that parses again and encodes to the same bytes.
func FuzzParse(f *testing.F) {
	f.Add([]byte(pbsFixture))
	f.Add([]byte(""))
	f.Add([]byte("{}"))
	f.Add([]byte("null"))
	f.Add([]byte(`{"users": {}}}`))
	f.Add([]byte(`{"users": {"alice@pam": {"totp": [{"id": "t1", "created": 1, "entry": {"totp": "otpauth://totp/x?secret=JBSWY3DPEHPK3PXP&digits=8", "last-count": null}}]}}}`))
	f.Add([]byte(`{"users": {"alice@pam": {"recovery": {"secret": "00", "entries": null, "created": 0}, "totp-locked": true}}}`))
	f.Add([]byte(`{"users": {"alice@pam": {"yubico": [{"id": "y", "created": 1, "entry": "x"}, {"id": "y", "created": 1, "entry": "x"}]}}}`))
	// A file as Gatehouse writes it, with a go-webauthn credential, a used TOTP entry and a
	// recovery set.
	m := newManager(f, nil)
	if err := m.SetWebauthn(publicRP); err != nil {
		f.Fatal(err)
	}
	a := newAuthenticator(f, publicRP, alice)
	a.register(f, m, alice, t0)
	enrolTOTP(f, m, alice, t0)
	if _, err := m.AddRecovery(alice, t0); err != nil {
		f.Fatal(err)
	}
	b, err := os.ReadFile(m.Path())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)

	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data)
		if err != nil {
			if !errors.Is(err, ErrSyntax) {
				t.Fatalf("Parse(%q) = %v; want ErrSyntax", data, err)
			}
			return
		}
		enc, err := c.Encode()
		if err != nil {
			t.Fatalf("Encode of parsed %q = %v", data, err)
		}
		c2, err := Parse(enc)
		if err != nil {
			t.Fatalf("Parse(Encode(Parse(%q))) = %v\nencoded: %s", data, err, enc)
		}
		enc2, err := c2.Encode()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(enc, enc2) {
			t.Fatalf("Encode not stable for %q:\n%s\n%s", data, enc, enc2)
		}
		// What Parse accepted is usable without panics, and its TOTP entries read.
		for _, id := range c.Userids() {
			u := c.Users[id]
			c.Summary(id, t0)
			u.credentials(true)
			if u.Recovery != nil {
				u.Recovery.Available()
				u.Recovery.use("0000-0000-0000-0000")
			}
			for _, e := range u.TOTP {
				if _, _, err := e.TOTP(); err != nil {
					t.Fatalf("accepted TOTP entry %s does not read: %v", e.ID, err)
				}
			}
		}
	})
}

// FuzzParseResponse: a response is split at its first colon into a known kind and a
// non-empty value, or refused with ErrInvalid.
func FuzzParseResponse(f *testing.F) {
	for _, s := range []string{"totp:123456", "recovery:0a1b-2c3d-4e5f-6a7b", `webauthn:{"challenge":"x"}`, "u2f:{}",
		"yubico:cccccckdvbjl", "totp:", ":", "", "sms:1", "totp"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		kind, value, err := ParseResponse(s)
		if err != nil {
			if !errors.Is(err, ErrInvalid) || kind != "" || value != "" {
				t.Fatalf("ParseResponse(%q) = %q, %q, %v; want ErrInvalid and nothing else", s, kind, value, err)
			}
			return
		}
		switch kind {
		case "totp", "recovery", "webauthn", "u2f", "yubico":
		default:
			t.Fatalf("ParseResponse(%q) kind %q", s, kind)
		}
		if value == "" || kind+":"+value != s {
			t.Fatalf("ParseResponse(%q) = %q, %q; want the parts around the first colon", s, kind, value)
		}
	})
}

// FuzzTOTPURI: parseTOTP never panics, refuses with ErrInvalid, and a key it accepts gives,
// at any time, a code of its digit count that matches at that time's step.
func FuzzTOTPURI(f *testing.F) {
	for _, s := range []string{
		"otpauth://totp/x?secret=JBSWY3DPEHPK3PXP",
		"otpauth://totp/Gatehouse:alice%40pam?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&algorithm=SHA512&digits=8&period=60",
		"otpauth://totp/x?secret=jbswy3dpehpk3pxp&algorithm=sha256&digits=7&period=1",
		"otpauth://totp/x?secret=JBSWY3DPEHPK3PXP%3D%3D%3D%3D",
		"otpauth://totp/x?secret=JBSWY3DPEHPK3PX",
		"otpauth://totp/x?secret=JBSWY3DPEHPK3PXP&period=3600",
		"otpauth://totp/x?secret=JBSWY3DPEHPK3PXP&algorithm=MD5",
		"otpauth://totp/x?secret=JBSWY3DPEHPK3PXP&digits=5",
		"otpauth://hotp/x?secret=JBSWY3DPEHPK3PXP",
		"otpauth://totp/x?secret=",
	} {
		f.Add(s, t0.Unix())
	}
	f.Fuzz(func(t *testing.T, uri string, unix int64) {
		k, err := parseTOTP(uri)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("parseTOTP(%q) = %v; want ErrInvalid", uri, err)
			}
			return
		}
		if d := k.opts.Digits.Length(); d < 6 || d > 8 || k.period < 1 || k.period > maxTOTPPeriod || len(k.raw) == 0 {
			t.Fatalf("parseTOTP(%q) accepted digits %d, period %d, %d secret bytes", uri, d, k.period, len(k.raw))
		}
		now := time.Unix(unix%(1<<40), 0) // ±35000 years; the steps around math.MinInt64 overflow
		c, err := Code(uri, now)
		if err != nil {
			t.Fatalf("parseTOTP(%q) accepted it, but Code = %v", uri, err)
		}
		if len(c) != k.opts.Digits.Length() || strings.Trim(c, "0123456789") != "" {
			t.Fatalf("Code(%q) = %q; want %d digits", uri, c, k.opts.Digits.Length())
		}
		// The step found is now's, or the one before when both have this code.
		if step, ok := k.match(c, now); !ok || step < k.step(now)-TOTPSkew || step > k.step(now) || codeAt(t, k, step) != c {
			t.Fatalf("match(Code(%q)) = %d, %v; want step %d", uri, step, ok, k.step(now))
		}
	})
}

// codeAt is k's code of step s.
func codeAt(t *testing.T, k *totpKey, s int64) string {
	c, err := k.code(s)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// FuzzSplitChallenge: the webauthn answer splitter takes out a non-empty "challenge" and
// keeps every other member, or refuses with ErrInvalid; its output splits the same way again
// once the challenge is put back.
func FuzzSplitChallenge(f *testing.F) {
	for _, s := range []string{
		`{"challenge":"q2v3CSGX9rRO8Ykc2wW3Sg","id":"abc","rawId":"abc","type":"public-key","response":{"authenticatorData":"x","clientDataJSON":"y","signature":"z"}}`,
		`{"challenge":""}`, `{"challenge":1}`, `{"challenge":"a","challenge":"b"}`, `{}`, `null`, `[]`, `{"id":1e400}`,
		`{"challenge":"x","n":12345678901234567890123}`, `{"challenge":"x"} trailing`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, value string) {
		ch, rest, err := splitChallenge(value)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("splitChallenge(%q) = %v; want ErrInvalid", value, err)
			}
			return
		}
		if ch == "" {
			t.Fatalf("splitChallenge(%q) gave an empty challenge", value)
		}
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(rest, &obj); err != nil || obj == nil {
			t.Fatalf("splitChallenge(%q) rest %q is not a JSON object: %v", value, rest, err)
		}
		if _, ok := obj["challenge"]; ok {
			t.Fatalf("splitChallenge(%q) left a challenge in %s", value, rest)
		}
		var orig map[string]json.RawMessage
		if err := json.NewDecoder(strings.NewReader(value)).Decode(&orig); err != nil {
			t.Fatalf("splitChallenge accepted %q, which does not decode: %v", value, err)
		}
		if len(orig) != len(obj)+1 {
			t.Fatalf("splitChallenge(%q): %d members left of %d", value, len(obj), len(orig))
		}
		chJSON, _ := json.Marshal(ch)
		obj["challenge"] = chJSON
		again, err := json.Marshal(obj)
		if err != nil {
			t.Fatal(err)
		}
		ch2, rest2, err := splitChallenge(string(again))
		if err != nil || ch2 != ch || !bytes.Equal(rest2, rest) {
			t.Fatalf("splitChallenge not stable for %q: %q, %q, %v; want %q, %q", value, ch2, rest2, err, ch, rest)
		}
	})
}

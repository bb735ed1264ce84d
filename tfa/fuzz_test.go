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

// withMember returns the JSON object value with member challenge set, or value unchanged when
// it is not a JSON object.
func withMember(value, challenge string) string {
	var obj map[string]json.RawMessage
	if json.Unmarshal([]byte(value), &obj) != nil || obj == nil {
		return value
	}
	obj["challenge"], _ = json.Marshal(challenge)
	b, err := json.Marshal(obj)
	if err != nil {
		return value
	}
	return string(b)
}

// FuzzWebauthnLogin sends the second login step arbitrary WebAuthn answers. alice has a
// registered key; each input gets a fresh challenge, and when it is a JSON object its
// "challenge" member is set to that challenge, so the bytes reach go-webauthn's parser and
// the signature check. No answer may log in (that needs the key's signature over the fresh
// challenge) and every refusal is ErrFailed or ErrInvalid. The state file is removed before
// each input, so the failure lockout (100 failures) never stops inputs before the parser.
func FuzzWebauthnLogin(f *testing.F) {
	m := newWebauthnManager(f, publicRP)
	a := newAuthenticator(f, publicRP, alice)
	a.register(f, m, alice, t0)
	real, _ := strings.CutPrefix(a.answer(f, challenge(f, m, alice, t0)), "webauthn:")
	f.Add(real)
	f.Add(`{"id":"x","rawId":"x","type":"public-key","response":{"authenticatorData":"","clientDataJSON":"e30","signature":""}}`)
	f.Add(`{}`)
	f.Add(`[`)
	f.Fuzz(func(t *testing.T, value string) {
		if err := os.Remove(m.statePath(alice)); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		ch := challenge(t, m, alice, t0)
		wa := jsonMember(t, ch, "webauthn")
		err := m.Verify(alice, ch, "webauthn:"+withMember(value, publicKeyChallenge(t, string(wa))), t0)
		if err == nil {
			t.Fatalf("answer %q logged in", value)
		}
		if !errors.Is(err, ErrFailed) && !errors.Is(err, ErrInvalid) {
			t.Fatalf("answer %q: %v; want ErrFailed or ErrInvalid", value, err)
		}
	})
}

// FuzzWebauthnRegistration sends the registration's second step arbitrary attestation
// responses for a fresh challenge: none may add a factor (tfa.json keeps its one key).
func FuzzWebauthnRegistration(f *testing.F) {
	m := newWebauthnManager(f, publicRP)
	a := newAuthenticator(f, publicRP, alice)
	a.register(f, m, alice, t0)
	options, err := m.BeginRegistration(alice, "second", t0)
	if err != nil {
		f.Fatal(err)
	}
	_, real := a.attest(f, options)
	f.Add(real)
	f.Add(tamper(f, real))
	f.Add(`{"id":"x","rawId":"x","type":"public-key","response":{"attestationObject":"o2NmbXRkbm9uZQ","clientDataJSON":"e30"}}`)
	f.Add(`null`)
	before := len(config(f, m).Users[alice].Webauthn)
	f.Fuzz(func(t *testing.T, response string) {
		options, err := m.BeginRegistration(alice, "fuzzed", t0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := m.FinishRegistration(alice, publicKeyChallenge(t, options), response, t0); err == nil {
			t.Fatalf("registration %q accepted", response)
		}
		if n := len(config(t, m).Users[alice].Webauthn); n != before {
			t.Fatalf("after registration %q, %d keys; want %d", response, n, before)
		}
	})
}

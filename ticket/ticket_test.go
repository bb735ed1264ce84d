package ticket

import (
	"crypto/ed25519"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"strings"
	"testing"
	"time"
)

// Golden values, computed with openssl 3.0 (pkeyutl -sign -rawin with the Ed25519 key of seed
// 0x00..0x1f), independently of this package.
const (
	goldenTime    = 0x5F5E1000 // 2020-09-13T12:26:40Z
	goldenPub     = "MCowBQYDK2VwAyEAA6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg="
	goldenUser    = "PBS:root@pam:5F5E1000::Dw5MDY+kzxv1NPzpNhhGfmlvbxj4RISnEiSGaVlvJ6Vf0K4Yk/nXAngWj/7cuvz0lT2gJsfbNlBaBZWK/DnXDg"
	goldenTFA     = `PBS:!tfa!{"totp"%3Atrue}:5F5E1000::Qy1cLABdKokFV+8zbfGBrftGBCK3GfSMMa9UJmEbUdfUEwHtGr3sc9izY6IDzBrU2jxdpbtDeiiWwezR5fEhDg`
	goldenEncoded = "PBS:j%C3%BCrgen%3Ax%0A@pbs:5F5E1000::gBTrrHWHLnKBkW2Gn3PDlqDapWomz17RayC9dg0IOz0BYg1u8MK3CAiiQdVzj0eGW/oMvksgxeAbATnsbLgUCA"
)

var t0 = time.Unix(goldenTime, 0)

// goldenSeed returns the Ed25519 seed 0x00..0x1f.
func goldenSeed() []byte {
	seed := make([]byte, ed25519.SeedSize)
	for i := range seed {
		seed[i] = byte(i)
	}
	return seed
}

func pemBytes(t testing.TB, typ string, der []byte) []byte {
	t.Helper()
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

// goldenSigner returns the Signer of the golden Ed25519 key, parsed from PKCS#8 PEM.
func goldenSigner(t testing.TB) *Signer {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(ed25519.NewKeyFromSeed(goldenSeed()))
	if err != nil {
		t.Fatal(err)
	}
	s, err := ParseSigner(pemBytes(t, "PRIVATE KEY", der))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// newSigner returns a Signer of a fresh Ed25519 key.
func newSigner(t testing.TB) *Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ParseSigner(pemBytes(t, "PRIVATE KEY", der))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mustSign(t testing.TB, s *Signer, prefix, data, aad string, now time.Time) string {
	t.Helper()
	tk, err := s.Sign(prefix, data, aad, now)
	if err != nil {
		t.Fatalf("Sign(%q, %q, %q) = %v", prefix, data, aad, err)
	}
	return tk
}

// sentinels are the verification errors; every error must wrap exactly one.
var sentinels = []error{ErrMalformed, ErrPrefix, ErrKind, ErrSignature, ErrExpired, ErrFuture}

func wrapsOne(err error) bool {
	n := 0
	for _, s := range sentinels {
		if errors.Is(err, s) {
			n++
		}
	}
	return n == 1
}

// TestGoldenByHand builds tickets byte by byte from the format and checks that Sign writes
// exactly those bytes, and that they match the openssl-made golden tickets.
func TestGoldenByHand(t *testing.T) {
	priv := ed25519.NewKeyFromSeed(goldenSeed())
	byHand := func(text, aad string) string {
		msg := text
		if aad != "" {
			msg += ":" + aad
		}
		return text + "::" + base64.RawStdEncoding.EncodeToString(ed25519.Sign(priv, []byte(msg)))
	}
	s := goldenSigner(t)
	tests := []struct {
		name, prefix, data, aad, text, golden string
	}{
		{"user", "PBS", "root@pam", "", "PBS" + ":" + "root@pam" + ":" + "5F5E1000", goldenUser},
		{"tfa", "PBS", `!tfa!{"totp":true}`, "root@pam", `PBS:!tfa!{"totp"` + "%3A" + `true}:5F5E1000`, goldenTFA},
		{"encoded", "PBS", "jürgen:x\n@pbs", "", "PBS:j" + "%C3%BC" + "rgen" + "%3A" + "x" + "%0A" + "@pbs:5F5E1000", goldenEncoded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := byHand(tt.text, tt.aad)
			if want != tt.golden {
				t.Fatalf("by hand %q; openssl golden %q", want, tt.golden)
			}
			if got := mustSign(t, s, tt.prefix, tt.data, tt.aad, t0); got != want {
				t.Errorf("Sign(%q, %q, %q) = %q; want %q", tt.prefix, tt.data, tt.aad, got, want)
			}
			data, issued, err := s.Public().Verify(tt.golden, tt.prefix, tt.aad, FullLifetime, FullMaxFuture, t0)
			if err != nil || data != tt.data || !issued.Equal(t0) {
				t.Errorf("Verify(%q) = %q, %v, %v; want %q, %v, nil", tt.golden, data, issued, err, tt.data, t0)
			}
		})
	}
	pub := string(pemBytes(t, "PUBLIC KEY", mustBase64(t, goldenPub)))
	v, err := ParseVerifier([]byte(pub))
	if err != nil {
		t.Fatal(err)
	}
	if u, _, err := v.VerifyUser(goldenUser, "PBS", t0); err != nil || u != "root@pam" {
		t.Errorf("VerifyUser(golden) with openssl's public key = %q, %v; want root@pam, nil", u, err)
	}
	if c, _, err := v.VerifyTFA(goldenTFA, "PBS", "root@pam", t0); err != nil || c != `{"totp":true}` {
		t.Errorf("VerifyTFA(golden) = %q, %v; want {\"totp\":true}, nil", c, err)
	}
}

func mustBase64(t testing.TB, s string) []byte {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestEncode(t *testing.T) {
	tests := []struct{ in, want string }{
		{"root@pam", "root@pam"},
		{"a:b", "a%3Ab"},
		{"\x00\x01\x1f", "%00%01%1F"},
		{"\x7f", "%7F"},
		{" !\"#$&'()*+,-./;<=>?[\\]^_`{|}~", " !\"#$&'()*+,-./;<=>?[\\]^_`{|}~"},
		{"%", "%"},
		{"%zz", "%zz"},
		{"é", "%C3%A9"},
		{"日", "%E6%97%A5"},
		{"\t\r\n", "%09%0D%0A"},
		{`{"a":1}`, `{"a"%3A1}`},
	}
	for _, tt := range tests {
		if got := encode(tt.in); got != tt.want {
			t.Errorf("encode(%q) = %q; want %q", tt.in, got, tt.want)
		}
		if got, ok := decode(tt.want); !ok || got != tt.in {
			t.Errorf("decode(%q) = %q, %v; want %q, true", tt.want, got, ok, tt.in)
		}
	}
}

func TestDecodeRefusesNonCanonical(t *testing.T) {
	for _, in := range []string{
		"%3a",       // lower-case hex: PBS decodes it, Sign never writes it
		"%41",       // 'A' needs no escape
		"%25",       // '%' is never escaped
		"a\x01",     // raw control byte
		"a\x7f",     // raw DEL
		"é",         // raw non-ASCII
		"%C3",       // invalid UTF-8 once decoded
		"%FF%FE",    // invalid UTF-8
		"%E6%97",    // truncated UTF-8
		"%C0%80",    // overlong NUL
		"x%3a%3A",   // one bad escape among good ones
		"%ED%A0%80", // surrogate
	} {
		if got, ok := decode(in); ok {
			t.Errorf("decode(%q) = %q, true; want refused", in, got)
		}
	}
}

func TestSignRefuses(t *testing.T) {
	s := newSigner(t)
	tests := []struct{ name, prefix, data string }{
		{"escape in data", "PBS", "a%41b@pbs"},
		{"escape in prefix", "P%3ABS", "root@pam"},
		{"invalid UTF-8", "PBS", "\xff@pbs"},
		{"too long", "PBS", strings.Repeat("x", MaxTicketLen)},
	}
	for _, tt := range tests {
		if tk, err := s.Sign(tt.prefix, tt.data, "", t0); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: Sign(%q, %.20q) = %.40q, %v; want ErrMalformed", tt.name, tt.prefix, tt.data, tk, err)
		}
	}
	for _, u := range []string{"root@pam!tok", "root", "", "a:b@pam"} {
		if _, err := s.SignUser("PBS", u, t0); !errors.Is(err, ErrMalformed) {
			t.Errorf("SignUser(%q) = %v; want ErrMalformed", u, err)
		}
		if _, err := s.SignTFA("PBS", u, "{}", t0); !errors.Is(err, ErrMalformed) {
			t.Errorf("SignTFA(%q) = %v; want ErrMalformed", u, err)
		}
	}
}

func TestRoundTripData(t *testing.T) {
	s := newSigner(t)
	v := s.Public()
	for _, data := range []string{
		"root@pam", "a:b:c", "::", "\x00", "\x1f\x7f", "jürgen@pbs", "日本@pbs", "100%", "%zz", "%3",
		"%:", `!tfa!{"webauthn":{"challenge":"x"}}`, "", " spaces ", "tab\there",
	} {
		for _, prefix := range []string{"PBS", "PVE", "PBS:TERM", "Ü"} {
			for _, aad := range []string{"", "root@pam", "a:b"} {
				tk := mustSign(t, s, prefix, data, aad, t0)
				if strings.Count(tk, ":") < 4 || strings.Count(Info(tk), ":") != 4 {
					t.Errorf("Sign(%q, %q, %q) = %q: want exactly 4 ':' before the signature", prefix, data, aad, tk)
				}
				got, issued, err := v.Verify(tk, prefix, aad, FullLifetime, FullMaxFuture, t0)
				if err != nil || got != data || !issued.Equal(t0) {
					t.Errorf("Verify(Sign(%q, %q, %q)) = %q, %v, %v; want %q, %v, nil", prefix, data, aad, got, issued, err, data, t0)
				}
			}
		}
	}
}

func TestInfo(t *testing.T) {
	tests := []struct{ in, want string }{
		{goldenUser, "PBS:root@pam:5F5E1000::"},
		{goldenTFA, `PBS:!tfa!{"totp"%3Atrue}:5F5E1000::`},
		{"PBS:root@pam:5F5E1000:x", ""},
		{"garbage", ""},
		{"", ""},
	}
	for _, tt := range tests {
		if got := Info(tt.in); got != tt.want {
			t.Errorf("Info(%.30q) = %q; want %q", tt.in, got, tt.want)
		}
	}
}

// replaceSig returns tk with its signature replaced.
func replaceSig(tk, sig string) string {
	i := strings.LastIndex(tk, "::")
	return tk[:i+2] + sig
}

func TestTampered(t *testing.T) {
	s := goldenSigner(t)
	v := s.Public()
	tk := goldenUser
	sig := tk[strings.LastIndex(tk, "::")+2:]
	flip := func(c byte) byte {
		if c == 'A' {
			return 'B'
		}
		return 'A'
	}
	other := newSigner(t)
	otherTk := mustSign(t, other, "PBS", "root@pam", "", t0)
	tests := []struct {
		name, ticket, prefix string
		want                 error
	}{
		{"first signature char", replaceSig(tk, string(flip(sig[0]))+sig[1:]), "PBS", ErrSignature},
		{"middle signature char", replaceSig(tk, sig[:40]+string(flip(sig[40]))+sig[41:]), "PBS", ErrSignature},
		{"signature of another key", replaceSig(tk, otherTk[strings.LastIndex(otherTk, "::")+2:]), "PBS", ErrSignature},
		{"signature truncated", replaceSig(tk, sig[:len(sig)-2]), "PBS", ErrSignature},
		{"signature extended", replaceSig(tk, sig+"AAAA"), "PBS", ErrSignature},
		{"signature empty", replaceSig(tk, ""), "PBS", ErrMalformed},
		{"signature padded", replaceSig(tk, sig+"=="), "PBS", ErrMalformed},
		{"signature with newline", replaceSig(tk, sig[:10]+"\n"+sig[10:]), "PBS", ErrMalformed},
		{"signature not base64", replaceSig(tk, sig[:10]+"!"+sig[11:]), "PBS", ErrMalformed},
		{"signature url-safe", replaceSig(tk, strings.NewReplacer("+", "-", "/", "_").Replace(sig)), "PBS", ErrMalformed},
		{"signature with colon", tk + ":", "PBS", ErrMalformed},
		{"user changed", strings.Replace(tk, "root@pam", "root@pbs", 1), "PBS", ErrSignature},
		{"user appended", strings.Replace(tk, "root@pam", "root@pam2", 1), "PBS", ErrSignature},
		{"time changed within window", strings.Replace(tk, "5F5E1000", "5F5E1001", 1), "PBS", ErrSignature},
		{"time lower case", strings.Replace(tk, "5F5E1000", "5f5e1000", 1), "PBS", ErrMalformed},
		{"time 7 digits", strings.Replace(tk, "5F5E1000", "5F5E100", 1), "PBS", ErrMalformed},
		{"time leading zero", strings.Replace(tk, "5F5E1000", "05F5E1000", 1), "PBS", ErrMalformed},
		{"time signed", strings.Replace(tk, "5F5E1000", "+5F5E1000", 1), "PBS", ErrMalformed},
		{"time 17 digits", strings.Replace(tk, "5F5E1000", "10000000000000000", 1), "PBS", ErrMalformed},
		{"prefix changed", strings.Replace(tk, "PBS", "PVE", 1), "PBS", ErrPrefix},
		{"prefix expected other", tk, "PVE", ErrPrefix},
		{"user percent-escaped", strings.Replace(tk, "root@pam", "r%6Fot@pam", 1), "PBS", ErrMalformed},
		{"no separator", strings.Replace(tk, "::", ":", 1), "PBS", ErrMalformed},
		{"empty", "", "PBS", ErrMalformed},
		{"prefix only", "PBS", "PBS", ErrMalformed},
		{"no time", "PBS:root@pam", "PBS", ErrMalformed},
		{"no signature", "PBS:root@pam:5F5E1000", "PBS", ErrMalformed},
		{"too long", tk + strings.Repeat("A", MaxTicketLen), "PBS", ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, _, err := v.VerifyUser(tt.ticket, tt.prefix, t0)
			if !errors.Is(err, tt.want) || !wrapsOne(err) {
				t.Errorf("VerifyUser(%.60q, %q) = %q, %v; want error wrapping only %v", tt.ticket, tt.prefix, u, err, tt.want)
			}
			if err != nil && (strings.Contains(err.Error(), sig[:20]) || strings.Contains(err.Error(), "root@p")) {
				t.Errorf("VerifyUser(%.60q) error %q contains the signature or data", tt.ticket, err)
			}
		})
	}
}

// TestWindow checks the time limits at the exact boundaries, with injected now.
func TestWindow(t *testing.T) {
	s := goldenSigner(t)
	v := s.Public()
	full := goldenUser
	tfa := mustSign(t, s, "PBS", "!tfa!{}", "root@pam", t0)
	sec := func(n int64) time.Time { return t0.Add(time.Duration(n) * time.Second) }
	tests := []struct {
		name string
		tfa  bool
		now  time.Time
		want error
	}{
		{"full at issue", false, t0, nil},
		{"full at end of lifetime", false, sec(7200), nil},
		{"full lifetime plus fraction", false, sec(7200).Add(999 * time.Millisecond), nil},
		{"full 1 s after lifetime", false, sec(7201), ErrExpired},
		{"full long after", false, t0.AddDate(100, 0, 0), ErrExpired},
		{"full 300 s ahead", false, sec(-300), nil},
		{"full 301 s ahead", false, sec(-301), ErrFuture},
		{"full far ahead", false, time.Unix(0, 0), ErrFuture},
		{"tfa at issue", true, t0, nil},
		{"tfa at end of lifetime", true, sec(600), nil},
		{"tfa 1 s after lifetime", true, sec(601), ErrExpired},
		{"tfa 60 s ahead", true, sec(-60), nil},
		{"tfa 61 s ahead", true, sec(-61), ErrFuture},
	}
	for _, tt := range tests {
		var err error
		if tt.tfa {
			_, _, err = v.VerifyTFA(tfa, "PBS", "root@pam", tt.now)
		} else {
			_, _, err = v.VerifyUser(full, "PBS", tt.now)
		}
		if !errors.Is(err, tt.want) || (err != nil && !wrapsOne(err)) {
			t.Errorf("%s: verify at %v = %v; want %v", tt.name, tt.now.Unix()-goldenTime, err, tt.want)
		}
	}
	// Verify with explicit limits: [now-lifetime, now+maxFuture].
	if _, _, err := v.Verify(full, "PBS", "", time.Minute, 0, sec(60)); err != nil {
		t.Errorf("Verify(lifetime 1m, now +60 s) = %v; want nil", err)
	}
	if _, _, err := v.Verify(full, "PBS", "", time.Minute, 0, sec(61)); !errors.Is(err, ErrExpired) {
		t.Errorf("Verify(lifetime 1m, now +61 s) = %v; want ErrExpired", err)
	}
	if _, _, err := v.Verify(full, "PBS", "", time.Minute, 0, sec(-1)); !errors.Is(err, ErrFuture) {
		t.Errorf("Verify(maxFuture 0, now -1 s) = %v; want ErrFuture", err)
	}
}

func TestKinds(t *testing.T) {
	s := newSigner(t)
	v := s.Public()
	full, err := s.SignUser("PBS", "alice@pbs", t0)
	if err != nil {
		t.Fatal(err)
	}
	tfa, err := s.SignTFA("PBS", "alice@pbs", `{"totp":true}`, t0)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		f    func() (string, error)
		want error
		got  string
	}{
		{"full as full", func() (string, error) { u, _, err := v.VerifyUser(full, "PBS", t0); return u, err }, nil, "alice@pbs"},
		{"tfa as tfa", func() (string, error) { c, _, err := v.VerifyTFA(tfa, "PBS", "alice@pbs", t0); return c, err }, nil, `{"totp":true}`},
		{"tfa as full", func() (string, error) { u, _, err := v.VerifyUser(tfa, "PBS", t0); return u, err }, ErrKind, ""},
		{"full as tfa", func() (string, error) { c, _, err := v.VerifyTFA(full, "PBS", "alice@pbs", t0); return c, err }, ErrKind, ""},
		{"tfa for another user", func() (string, error) { c, _, err := v.VerifyTFA(tfa, "PBS", "bob@pbs", t0); return c, err }, ErrSignature, ""},
		{"tfa without user", func() (string, error) { c, _, err := v.VerifyTFA(tfa, "PBS", "", t0); return c, err }, ErrMalformed, ""},
		{"tfa with wrong prefix", func() (string, error) { c, _, err := v.VerifyTFA(tfa, "PVE", "alice@pbs", t0); return c, err }, ErrPrefix, ""},
		{"tfa via Verify without aad", func() (string, error) {
			d, _, err := v.Verify(tfa, "PBS", "", TFALifetime, TFAMaxFuture, t0)
			return d, err
		}, ErrSignature, ""},
		{"full signed with aad", func() (string, error) {
			u, _, err := v.VerifyUser(mustSign(t, s, "PBS", "alice@pbs", "alice@pbs", t0), "PBS", t0)
			return u, err
		}, ErrSignature, ""},
		{"tfa data without aad", func() (string, error) {
			u, _, err := v.VerifyUser(mustSign(t, s, "PBS", "!tfa!{}", "", t0), "PBS", t0)
			return u, err
		}, ErrKind, ""},
		{"full ticket data not a user id", func() (string, error) {
			u, _, err := v.VerifyUser(mustSign(t, s, "PBS", "alice@pbs!token", "", t0), "PBS", t0)
			return u, err
		}, ErrMalformed, ""},
	}
	for _, tt := range tests {
		got, err := tt.f()
		if !errors.Is(err, tt.want) || (err != nil && !wrapsOne(err)) || got != tt.got {
			t.Errorf("%s = %q, %v; want %q, %v", tt.name, got, err, tt.got, tt.want)
		}
	}
}

func TestHexTime(t *testing.T) {
	tests := []struct {
		in   int64
		want string
	}{
		{0, "00000000"},
		{1, "00000001"},
		{goldenTime, "5F5E1000"},
		{0xFFFFFFFF, "FFFFFFFF"},
		{0x100000000, "100000000"},
		{-1, "FFFFFFFFFFFFFFFF"}, // Rust's {:08X} of a negative i64
	}
	for _, tt := range tests {
		var b strings.Builder
		writeHexTime(&b, tt.in)
		if got := b.String(); got != tt.want {
			t.Errorf("writeHexTime(%d) = %q; want %q", tt.in, got, tt.want)
		}
		if got, ok := parseHexTime(tt.want); !ok || got != tt.in {
			t.Errorf("parseHexTime(%q) = %d, %v; want %d, true", tt.want, got, ok, tt.in)
		}
	}
}

package tfa

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"
)

// pbsSecret is the TOTP secret of pbsFixture's plain-string entry of alice@pbs (base32
// "JBSWY3DPEHPK3PXP": the bytes "Hello!\xde\xad\xbe\xef").
var pbsSecret = []byte("Hello!\xde\xad\xbe\xef")

// pbsRecoveryCodes are the codes of pbsFixture's recovery sets, whose hashes were computed
// with `openssl dgst -sha256 -hmac 0123456789abcdef` (PBS's scheme); the second is used.
var pbsRecoveryCodes = []string{"0a1b-2c3d-4e5f-6a7b", "1111-2222-3333-4444", "dead-beef-cafe-f00d"}

// pbsFixture is a tfa.json as PBS writes it: every entry kind, both TOTP entry forms, a
// webauthn-rs credential, a recovery set with a used code, and both lock states.
const pbsFixture = `{
  "u2f": {"appid": "https://pbs.example.com:8007", "origin": "https://pbs.example.com:8007"},
  "webauthn": {"rp": "pbs.example.com", "origin": "https://pbs.example.com:8007", "id": "pbs.example.com"},
  "users": {
    "root@pam": {
      "totp": [
        {"id": "6a3e2f3c-3f5a-4c1e-9c0e-1f2a3b4c5d6e", "description": "phone", "created": 1700000000,
         "entry": "otpauth://totp/pbs:root%40pam?secret=JBSWY3DPEHPK3PXP&issuer=pbs"},
        {"id": "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0", "description": "tablet", "created": 1700000100, "enable": false,
         "entry": {"totp": "otpauth://totp/pbs:root%40pam?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&algorithm=SHA256&digits=8&period=60", "last-count": 28333335}}
      ],
      "webauthn": [
        {"id": "c0ffee00-1111-2222-3333-444455556666", "description": "yubikey 5", "created": 1700000200,
         "entry": {"cred_id": "q2v3CSGX9rRO8Ykc2wW3Sg", "cred": {"type_": "ES256", "key": {"EC_EC2": {"curve": "SECP256R1",
           "x": [12, 34, 56, 78], "y": [90, 12, 34, 56]}}}, "counter": 0, "verified": false, "registration_policy": "discouraged"}}
      ],
      "recovery": {"secret": "0123456789abcdef", "entries": [
        "4c2ad962eef20c3b3f65e7812db1b27167a8bba0fb3ef15299fee551a8085057",
        null,
        "20a485f125def13b8ad8d32c6f62f97503f7e74006fa9aefd2df1698ac63e31c"], "created": 1700000300},
      "yubico": [{"id": "yubico-1", "description": "otp key", "created": 1700000400, "entry": "cccccckdvbjl"}],
      "u2f": [{"id": "u2f-1", "description": "old key", "created": 1700000500, "enable": true,
        "entry": {"key": {"version": "U2F_V2", "key-handle": "a2V5aGFuZGxl"}, "public-key": "BPq3", "certificate": "MIIBhDCCASqg"}}],
      "totp-locked": true,
      "tfa-locked-until": 1800000000
    },
    "alice@pbs": {
      "totp": [{"id": "a1", "created": 1700000000, "entry": "otpauth://totp/pbs:alice%40pbs?secret=JBSWY3DPEHPK3PXP"}],
      "recovery": {"secret": "0123456789abcdef", "entries": [
        "4c2ad962eef20c3b3f65e7812db1b27167a8bba0fb3ef15299fee551a8085057",
        "192312f6c92e2cb9bfc9955a39251964eae710fdcd0fc9127fb3bba0d2618a3f",
        null], "created": 1700000300}
    },
    "carol@pve": {
      "yubico": [{"id": "y1", "created": 1700000000, "entry": "cccccckdvbjl"}],
      "u2f": [{"id": "u1", "created": 1700000000, "entry": {"key-handle": "aGFuZGxl"}}]
    }
  }
}`

// generic decodes JSON with exact numbers, for comparing documents whatever their layout.
func generic(t testing.TB, b []byte) any {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		t.Fatalf("decoding %s: %v", b, err)
	}
	return v
}

func TestParsePBSFixture(t *testing.T) {
	t.Parallel()
	c, err := Parse([]byte(pbsFixture))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := c.Userids(), []string{"alice@pbs", "carol@pve", "root@pam"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Userids() = %v; want %v", got, want)
	}
	want := WebauthnConfig{RP: "pbs.example.com", Origin: "https://pbs.example.com:8007", ID: "pbs.example.com"}
	if c.Webauthn == nil || *c.Webauthn != want {
		t.Errorf("Webauthn = %+v; want %+v", c.Webauthn, want)
	}
	root := c.Users["root@pam"]
	if !root.TOTPLocked || root.TFALockedUntil != 1800000000 {
		t.Errorf("root lock state = %v, %d; want true, 1800000000", root.TOTPLocked, root.TFALockedUntil)
	}

	uri, last, err := root.TOTP[0].TOTP()
	if err != nil || !strings.Contains(uri, "secret=JBSWY3DPEHPK3PXP") || last != NoCount {
		t.Errorf("plain totp entry = %q, %d, %v; want the URI, NoCount, nil", uri, last, err)
	}
	if !root.TOTP[0].Enabled() {
		t.Errorf("entry without enable: Enabled() = false; want true")
	}
	uri, last, err = root.TOTP[1].TOTP()
	if err != nil || !strings.Contains(uri, "algorithm=SHA256") || last != 28333335 {
		t.Errorf("object totp entry = %q, %d, %v; want the URI, 28333335, nil", uri, last, err)
	}
	if root.TOTP[1].Enabled() {
		t.Errorf(`entry with "enable": false: Enabled() = true`)
	}
	if _, err := root.Webauthn[0].Credential(); !errors.Is(err, ErrUnsupported) {
		t.Errorf("webauthn-rs entry: Credential() = %v; want ErrUnsupported", err)
	}
	if got, want := root.Recovery.Available(), []int{0, 2}; !reflect.DeepEqual(got, want) {
		t.Errorf("recovery Available() = %v; want %v", got, want)
	}
	if len(root.Yubico) != 1 || string(root.Yubico[0].Entry) != `"cccccckdvbjl"` {
		t.Errorf("yubico = %+v; want one entry with the OTP id", root.Yubico)
	}

	var types []string
	for _, e := range c.Summary("root@pam", t0).Entries {
		types = append(types, e.Type+":"+e.ID)
	}
	wantTypes := []string{"recovery:recovery", "totp:6a3e2f3c-3f5a-4c1e-9c0e-1f2a3b4c5d6e", "totp:0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0",
		"webauthn:c0ffee00-1111-2222-3333-444455556666", "u2f:u2f-1", "yubico:yubico-1"}
	if !reflect.DeepEqual(types, wantTypes) {
		t.Errorf("Summary entries = %v; want %v", types, wantTypes)
	}
	s := c.Summary("root@pam", t0)
	if !s.TOTPLocked || s.TFALockedUntil != 1800000000 {
		t.Errorf("Summary lock state = %v, %d; want true, 1800000000", s.TOTPLocked, s.TFALockedUntil)
	}
	if s := c.Summary("root@pam", t0.AddDate(10, 0, 0)); s.TFALockedUntil != 0 {
		t.Errorf("Summary after the lock expired: TFALockedUntil = %d; want 0", s.TFALockedUntil)
	}
	if s := c.Summary("nobody@pam", t0); s.Entries == nil || len(s.Entries) != 0 {
		t.Errorf("Summary of a user without TFA: Entries = %#v; want []", s.Entries)
	}
}

// TestEncodeRoundTrip checks that Encode keeps every member of a PBS file, including the
// entries Gatehouse cannot use, and that Parse(Encode(c)) encodes to the same bytes.
func TestEncodeRoundTrip(t *testing.T) {
	t.Parallel()
	c, err := Parse([]byte(pbsFixture))
	if err != nil {
		t.Fatal(err)
	}
	enc, err := c.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasSuffix(enc, []byte("}\n")) {
		t.Errorf("Encode() does not end in a newline: %q", enc[len(enc)-10:])
	}
	if got, want := generic(t, enc), generic(t, []byte(pbsFixture)); !reflect.DeepEqual(got, want) {
		t.Errorf("Encode() lost or changed data:\ngot  %s\nwant %s", enc, pbsFixture)
	}
	c2, err := Parse(enc)
	if err != nil {
		t.Fatalf("Parse(Encode()) = %v", err)
	}
	enc2, err := c2.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(enc, enc2) {
		t.Errorf("Encode is not stable:\nfirst  %s\nsecond %s", enc, enc2)
	}

	for _, in := range []string{"", "  \n", "{}", "null", `{"users": {}}`} {
		c, err := Parse([]byte(in))
		if err != nil {
			t.Errorf("Parse(%q) = %v; want an empty config", in, err)
			continue
		}
		if len(c.Users) != 0 || c.Webauthn != nil {
			t.Errorf("Parse(%q) = %+v; want an empty config", in, c)
		}
	}
}

// TestManagerKeepsPBSEntries writes the PBS fixture as tfa.json, logs in with its TOTP entry
// and recovery codes, and checks that the file still holds everything else unchanged.
func TestManagerKeepsPBSEntries(t *testing.T) {
	t.Parallel()
	m := newManager(t, nil)
	if err := os.WriteFile(m.Path(), []byte(pbsFixture), 0o600); err != nil {
		t.Fatal(err)
	}
	// Codes made from the URI's secret by oathtool (hex key) log in alice@pbs.
	if err := verify(t, m, "alice@pbs", "totp:"+code(t, pbsSecret, t0), t0); err != nil {
		t.Fatalf("TOTP of the PBS fixture: Verify = %v", err)
	}
	if err := verify(t, m, "alice@pbs", "recovery:"+pbsRecoveryCodes[1], t0); err != nil {
		t.Fatalf("PBS recovery code: Verify = %v", err)
	}
	if err := verify(t, m, "alice@pbs", "recovery:"+pbsRecoveryCodes[2], t0); !errors.Is(err, ErrFailed) {
		t.Fatalf("PBS recovery code already used: Verify = %v; want ErrFailed", err)
	}
	raw, err := os.ReadFile(m.Path())
	if err != nil {
		t.Fatal(err)
	}
	got := generic(t, raw).(map[string]any)
	want := generic(t, []byte(pbsFixture)).(map[string]any)
	gotUsers, wantUsers := got["users"].(map[string]any), want["users"].(map[string]any)
	for _, u := range []string{"root@pam", "carol@pve"} {
		if !reflect.DeepEqual(gotUsers[u], wantUsers[u]) {
			t.Errorf("user %s changed by another user's login:\ngot  %v\nwant %v", u, gotUsers[u], wantUsers[u])
		}
	}
	if !reflect.DeepEqual(got["u2f"], want["u2f"]) || !reflect.DeepEqual(got["webauthn"], want["webauthn"]) {
		t.Errorf("top-level u2f/webauthn changed: %v %v", got["u2f"], got["webauthn"])
	}
	a := config(t, m).Users["alice@pbs"]
	if _, last, _ := a.TOTP[0].TOTP(); last != t0.Unix()/30 {
		t.Errorf("after a TOTP login last-count = %d; want %d", last, t0.Unix()/30)
	}
	if got, want := a.Recovery.Available(), []int{0}; !reflect.DeepEqual(got, want) {
		t.Errorf("after a recovery login Available() = %v; want %v", got, want)
	}
}

func TestParseRefuses(t *testing.T) {
	t.Parallel()
	const uri = "otpauth://totp/x?secret=JBSWY3DPEHPK3PXP"
	user := func(body string) string { return `{"users": {"alice@pam": ` + body + `}}` }
	totp := func(entry string) string {
		return user(`{"totp": [{"id": "t1", "created": 1, "entry": ` + entry + `}]}`)
	}
	tests := []struct{ name, in string }{
		{"unknown top-level field", `{"webauthn": null, "foo": 1}`},
		{"unknown user field", user(`{"totp": [], "sms": []}`)},
		{"unknown entry field", user(`{"yubico": [{"id": "y", "created": 1, "entry": "x", "extra": 1}]}`)},
		{"unknown totp entry field", totp(`{"totp": "` + uri + `", "last-count": 1, "skew": 2}`)},
		{"unknown webauthn config field", `{"webauthn": {"rp": "x", "id": "x", "origin": "https://x", "foo": 1}}`},
		{"userid without realm", `{"users": {"alice": {}}}`},
		{"userid with space", `{"users": {"al ice@pam": {}}}`},
		{"userid with empty name", `{"users": {"@pam": {}}}`},
		{"null user", `{"users": {"alice@pam": null}}`},
		{"duplicate entry id", user(`{"totp": [{"id": "x", "created": 1, "entry": "` + uri + `"}], "yubico": [{"id": "x", "created": 1, "entry": "y"}]}`)},
		{"duplicate entry id in one list", user(`{"yubico": [{"id": "x", "created": 1, "entry": "y"}, {"id": "x", "created": 1, "entry": "z"}]}`)},
		{"empty entry id", user(`{"yubico": [{"id": "", "created": 1, "entry": "y"}]}`)},
		{"entry id recovery", user(`{"u2f": [{"id": "recovery", "created": 1, "entry": {}}]}`)},
		{"entry without data", user(`{"yubico": [{"id": "y", "created": 1}]}`)},
		{"totp not otpauth", totp(`"https://example.com/?secret=JBSWY3DPEHPK3PXP"`)},
		{"totp hotp", totp(`"otpauth://hotp/x?secret=JBSWY3DPEHPK3PXP"`)},
		{"totp md5", totp(`"` + uri + `&algorithm=MD5"`)},
		{"totp 5 digits", totp(`"` + uri + `&digits=5"`)},
		{"totp period 0", totp(`"` + uri + `&period=0"`)},
		{"totp secret not base32", totp(`"otpauth://totp/x?secret=JBSWY3DP1!"`)},
		{"totp no secret", totp(`"otpauth://totp/x?issuer=x"`)},
		{"totp entry null", totp(`null`)},
		{"totp entry number", totp(`42`)},
		{"totp object without uri", totp(`{"last-count": 3}`)},
		{"recovery without secret", user(`{"recovery": {"secret": "", "entries": [], "created": 1}}`)},
		{"recovery hash too short", user(`{"recovery": {"secret": "00", "entries": ["abcd"], "created": 1}}`)},
		{"truncated", pbsFixture[:len(pbsFixture)/2]},
		{"truncated at end", strings.TrimSuffix(pbsFixture, "}")},
		{"trailing object", `{} {}`},
		{"trailing garbage", `{"users": {}}x`},
		{"trailing brace", `{"users": {}}}`},
		{"trailing bracket", `{}]`},
		{"array", `[]`},
		{"string", `"tfa"`},
		{"wrong type", `{"users": []}`},
		{"created not a number", user(`{"yubico": [{"id": "y", "created": "now", "entry": "x"}]}`)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := Parse([]byte(tt.in))
			if !errors.Is(err, ErrSyntax) {
				t.Errorf("Parse(%s) = %+v, %v; want ErrSyntax", tt.in, c, err)
			}
		})
	}
}

func TestEntries(t *testing.T) {
	t.Parallel()
	var e Entry
	e.setTOTP("otpauth://totp/x?secret=JBSWY3DPEHPK3PXP", NoCount)
	if string(e.Entry) != `"otpauth://totp/x?secret=JBSWY3DPEHPK3PXP"` {
		t.Errorf("setTOTP(uri, NoCount) = %s; want the plain string form", e.Entry)
	}
	e.setTOTP("otpauth://totp/x?secret=JBSWY3DPEHPK3PXP", 7)
	if uri, last, err := e.TOTP(); err != nil || last != 7 || uri != "otpauth://totp/x?secret=JBSWY3DPEHPK3PXP" {
		t.Errorf("TOTP() after setTOTP(uri, 7) = %q, %d, %v", uri, last, err)
	}
	var i Info
	i.SetEnabled(false)
	if i.Enabled() || i.Enable == nil {
		t.Errorf("SetEnabled(false): Enabled() = %v, Enable = %v", i.Enabled(), i.Enable)
	}
	i.SetEnabled(true)
	if !i.Enabled() || i.Enable != nil {
		t.Errorf("SetEnabled(true): Enabled() = %v, Enable = %v; want true, nil (PBS omits it)", i.Enabled(), i.Enable)
	}
	for _, d := range []string{"", "phone", strings.Repeat("x", 255), "ünïcode"} {
		if err := validDescription(d); err != nil {
			t.Errorf("validDescription(%q) = %v; want nil", d, err)
		}
	}
	for _, d := range []string{strings.Repeat("x", 256), "a\nb", "a\rb", "a\x00b"} {
		if err := validDescription(d); !errors.Is(err, ErrInvalid) {
			t.Errorf("validDescription(%q) = %v; want ErrInvalid", d, err)
		}
	}
}

package tfa

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// TestTOTPOathtool enrols and logs in with codes computed by oathtool for every algorithm,
// digit count and a few periods and key sizes, and checks Code against oathtool too.
func TestTOTPOathtool(t *testing.T) {
	t.Parallel()
	type tc struct {
		alg            string // URI spelling; oathtool gets it lower-cased
		digits, period int
		keyBytes       int
	}
	var tests []tc
	for _, alg := range []string{"SHA1", "SHA256", "SHA512"} {
		for _, digits := range []int{6, 7, 8} {
			tests = append(tests, tc{alg, digits, 30, 20})
		}
	}
	tests = append(tests, tc{"sha256", 8, 60, 32}, tc{"Sha512", 6, 30, 64}, tc{"SHA1", 6, 15, 10}, tc{"", 0, 0, 20})
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s/%d/%ds/%dB", tt.alg, tt.digits, tt.period, tt.keyBytes), func(t *testing.T) {
			t.Parallel()
			alg, digits, period := strings.ToLower(tt.alg), tt.digits, tt.period
			if alg == "" {
				alg, digits, period = "sha1", 6, 30 // the URI's defaults
			}
			m := newManager(t, nil)
			raw := newSecret(t, tt.keyBytes)
			uri := totpURI(raw, tt.alg, tt.digits, tt.period)
			enrol := oathTOTP(t, raw, alg, digits, period, t0)
			if len(enrol) != digits {
				t.Fatalf("oathtool gave %q; want %d digits", enrol, digits)
			}
			if got, err := Code(uri, t0); err != nil || got != enrol {
				t.Errorf("Code(%s, t0) = %q, %v; want oathtool's %q", uri, got, err, enrol)
			}
			id, err := m.AddTOTP(alice, "phone", uri, enrol, t0)
			if err != nil {
				t.Fatalf("AddTOTP with oathtool's code = %v", err)
			}
			later := t0.Add(time.Duration(5*period) * time.Second)
			if err := verify(t, m, alice, "totp:"+oathTOTP(t, raw, alg, digits, period, later), later); err != nil {
				t.Errorf("Verify with oathtool's code = %v", err)
			}
			e, _ := config(t, m).Users[alice].find(id)
			if _, last, _ := e.TOTP(); last != later.Unix()/int64(period) {
				t.Errorf("last-count = %d; want %d", last, later.Unix()/int64(period))
			}
		})
	}
	t.Run("base32 key", func(t *testing.T) {
		t.Parallel()
		m := newManager(t, nil)
		secret := "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ" // as a user would paste it into oathtool -b
		uri := "otpauth://totp/Gatehouse:alice%40pam?secret=" + strings.ToLower(secret)
		at := func(tm time.Time) string {
			return oathtool(t, "--totp", "-b", "--now", tm.UTC().Format("2006-01-02 15:04:05 UTC"), secret)
		}
		if _, err := m.AddTOTP(alice, "", uri, at(t0), t0); err != nil {
			t.Fatalf("AddTOTP, lower-case base32 secret = %v", err)
		}
		if err := verify(t, m, alice, "totp:"+at(t0.Add(time.Minute)), t0.Add(time.Minute)); err != nil {
			t.Errorf("Verify = %v", err)
		}
	})
}

// TestTOTPSkew checks that a code of the step before or after now is accepted and one two or
// more steps away refused.
func TestTOTPSkew(t *testing.T) {
	t.Parallel()
	login := t0.Add(10 * time.Minute)
	for _, d := range []int{-120, -90, -60, -30, 0, 30, 60, 90, 120} {
		t.Run(fmt.Sprintf("%+ds", d), func(t *testing.T) {
			t.Parallel()
			m := newManager(t, nil)
			raw := enrolTOTP(t, m, alice, t0)
			at := login.Add(time.Duration(d) * time.Second)
			err := verify(t, m, alice, "totp:"+code(t, raw, at), login)
			_, last, _ := config(t, m).Users[alice].TOTP[0].TOTP()
			if d >= -30 && d <= 30 {
				if err != nil {
					t.Errorf("code of %+ds: Verify = %v; want nil", d, err)
				}
				if last != at.Unix()/30 {
					t.Errorf("last-count = %d; want the step of the code used, %d", last, at.Unix()/30)
				}
				return
			}
			if !errors.Is(err, ErrFailed) || errors.Is(err, ErrLocked) {
				t.Errorf("code of %+ds: Verify = %v; want ErrFailed", d, err)
			}
			if last != t0.Unix()/30 {
				t.Errorf("after a refused code last-count = %d; want the enrolment step %d", last, t0.Unix()/30)
			}
		})
	}
}

// TestTOTPReplay checks that a code is accepted at most once, whichever challenge it answers,
// and that a code older than the last one used is refused.
func TestTOTPReplay(t *testing.T) {
	t.Parallel()
	m := newManager(t, nil)
	raw := enrolTOTP(t, m, alice, t0)
	login := t0.Add(time.Hour)
	c := code(t, raw, login)
	ch1, ch2 := challenge(t, m, alice, login), challenge(t, m, alice, login)
	if err := m.Verify(alice, ch1, "totp:"+c, login); err != nil {
		t.Fatalf("first use: Verify = %v", err)
	}
	if err := m.Verify(alice, ch2, "totp:"+c, login); !errors.Is(err, ErrFailed) {
		t.Errorf("same code, second challenge: Verify = %v; want ErrFailed", err)
	}
	if err := m.Verify(alice, ch1, "totp:"+c, login.Add(20*time.Second)); !errors.Is(err, ErrFailed) {
		t.Errorf("same code, same challenge, 20s later: Verify = %v; want ErrFailed", err)
	}
	if err := verify(t, m, alice, "totp:"+code(t, raw, login.Add(-30*time.Second)), login); !errors.Is(err, ErrFailed) {
		t.Errorf("code of the step before the one used: Verify = %v; want ErrFailed", err)
	}
	next := login.Add(30 * time.Second)
	if err := verify(t, m, alice, "totp:"+code(t, raw, next), next); err != nil {
		t.Errorf("code of the next step: Verify = %v; want nil", err)
	}
}

// TestTOTPEnrolmentCode checks that the code given to AddTOTP cannot then log in.
func TestTOTPEnrolmentCode(t *testing.T) {
	t.Parallel()
	m := newManager(t, nil)
	raw := newSecret(t, 20)
	c := code(t, raw, t0)
	if _, err := m.AddTOTP(alice, "phone", totpURI(raw, "", 0, 0), c, t0); err != nil {
		t.Fatal(err)
	}
	if _, last, _ := config(t, m).Users[alice].TOTP[0].TOTP(); last != t0.Unix()/30 {
		t.Errorf("after AddTOTP last-count = %d; want the enrolment step %d", last, t0.Unix()/30)
	}
	for _, at := range []time.Time{t0, t0.Add(30 * time.Second)} {
		if err := verify(t, m, alice, "totp:"+c, at); !errors.Is(err, ErrFailed) {
			t.Errorf("enrolment code at %s: Verify = %v; want ErrFailed", at, err)
		}
	}
	if err := verify(t, m, alice, "totp:"+code(t, raw, t0.Add(30*time.Second)), t0.Add(30*time.Second)); err != nil {
		t.Errorf("next code: Verify = %v; want nil", err)
	}
}

func TestAddTOTPRefuses(t *testing.T) {
	t.Parallel()
	raw := newSecret(t, 20)
	good := code(t, raw, t0)
	short := newSecret(t, 9) // 72 bits
	tests := []struct{ name, description, uri, code string }{
		{"md5", "", totpURI(raw, "MD5", 0, 0), good},
		{"sha224", "", totpURI(raw, "SHA224", 0, 0), good},
		{"5 digits", "", totpURI(raw, "", 5, 0), good[1:]},
		{"9 digits", "", totpURI(raw, "", 9, 0), "1" + good + "2"},
		{"digits not a number", "", totpURI(raw, "", 0, 0) + "&digits=six", good},
		{"period 0", "", totpURI(raw, "", 0, 0) + "&period=0", good},
		{"period -30", "", totpURI(raw, "", 0, 0) + "&period=-30", good},
		{"period 3601", "", totpURI(raw, "", 0, 3601), good},
		{"secret not base32", "", "otpauth://totp/x?secret=JBSWY3DP1BSWY089", good},
		{"secret bad length", "", "otpauth://totp/x?secret=JBSWY3DPE", good},
		{"no secret", "", "otpauth://totp/x?issuer=x", good},
		{"secret of 72 bits", "", totpURI(short, "", 0, 0), code(t, short, t0)},
		{"hotp", "", strings.Replace(totpURI(raw, "", 0, 0), "//totp/", "//hotp/", 1), good},
		{"not otpauth", "", strings.Replace(totpURI(raw, "", 0, 0), "otpauth:", "https:", 1), good},
		{"not a URI", "", "%zz", good},
		{"wrong code", "", totpURI(raw, "", 0, 0), wrongCodes(t, raw, t0, 1)[0]},
		{"code two steps old", "", totpURI(raw, "", 0, 0), code(t, raw, t0.Add(-time.Minute))},
		{"empty code", "", totpURI(raw, "", 0, 0), ""},
		{"description with newline", "a\nb", totpURI(raw, "", 0, 0), good},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m := newManager(t, nil)
			g := gen(m)
			id, err := m.AddTOTP(alice, tt.description, tt.uri, tt.code, t0)
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("AddTOTP(%q, %q) = %q, %v; want ErrInvalid", tt.uri, tt.code, id, err)
			}
			if _, err := os.Stat(m.Path()); err == nil || gen(m) != g {
				t.Errorf("a refused AddTOTP wrote tfa.json (generation %d -> %d)", g, gen(m))
			}
		})
	}
	t.Run("80 bits is enough", func(t *testing.T) {
		t.Parallel()
		m := newManager(t, nil)
		raw := newSecret(t, 10)
		if _, err := m.AddTOTP(alice, "", totpURI(raw, "", 0, 0), code(t, raw, t0), t0); err != nil {
			t.Errorf("AddTOTP with an 80-bit secret = %v; want nil", err)
		}
	})
}

// TestTOTPEntries checks that each of several entries logs in, that a disabled entry does
// not, and that a deleted one does not either.
func TestTOTPEntries(t *testing.T) {
	t.Parallel()
	m := newManager(t, nil)
	raw1 := enrolTOTP(t, m, alice, t0)
	raw2 := enrolTOTP(t, m, alice, t0)
	ids := config(t, m).Users[alice].TOTP
	if len(ids) != 2 || ids[0].ID == ids[1].ID {
		t.Fatalf("two AddTOTP: entries %+v", ids)
	}
	at := t0.Add(time.Hour)
	if err := verify(t, m, alice, "totp:"+code(t, raw2, at), at); err != nil {
		t.Errorf("second entry's code: Verify = %v", err)
	}
	at = at.Add(time.Hour)
	if err := verify(t, m, alice, "totp:"+code(t, raw1, at), at); err != nil {
		t.Errorf("first entry's code: Verify = %v", err)
	}
	off := false
	if err := m.Update(alice, ids[0].ID, nil, &off); err != nil {
		t.Fatal(err)
	}
	at = at.Add(time.Hour)
	if err := verify(t, m, alice, "totp:"+code(t, raw1, at), at); !errors.Is(err, ErrFailed) {
		t.Errorf("disabled entry's code: Verify = %v; want ErrFailed", err)
	}
	if err := m.Delete(alice, ids[1].ID); err != nil {
		t.Fatal(err)
	}
	at = at.Add(time.Hour)
	if err := m.Verify(alice, `{"totp":true}`, "totp:"+code(t, raw2, at), at); !errors.Is(err, ErrFailed) {
		t.Errorf("deleted entry's code: Verify = %v; want ErrFailed", err)
	}
}

// TestTOTPSecretSpellings: every spelling of a secret that parseTOTP accepts (padded or not,
// any case, extra padding) gives oathtool's codes.
func TestTOTPSecretSpellings(t *testing.T) {
	t.Parallel()
	raw := newSecret(t, 21) // 34 base32 digits, 6 of padding
	bare := b32(raw)
	for name, secret := range map[string]string{
		"unpadded":      bare,
		"padded":        bare + "======",
		"lower case":    strings.ToLower(bare) + "======",
		"extra padding": bare + "==========",
		"short padding": bare + "==",
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			m := newManager(t, nil)
			uri := "otpauth://totp/x?secret=" + strings.ReplaceAll(secret, "=", "%3D")
			if got, err := Code(uri, t0); err != nil || got != code(t, raw, t0) {
				t.Errorf("Code(%s) = %q, %v; want oathtool's %q", uri, got, err, code(t, raw, t0))
			}
			if _, err := m.AddTOTP(alice, "", uri, code(t, raw, t0), t0); err != nil {
				t.Fatalf("AddTOTP(%s) = %v", uri, err)
			}
			now := t0.Add(time.Minute)
			if err := verify(t, m, alice, "totp:"+code(t, raw, now), now); err != nil {
				t.Errorf("Verify = %v", err)
			}
		})
	}
}

package ticket

import (
	"errors"
	"strings"
	"testing"
	"time"

	"gatehouse/authid"
)

// FuzzVerify feeds arbitrary tickets to every verification function: none panics, every error
// wraps exactly one sentinel, and whatever verifies is one of the tickets this key signed.
func FuzzVerify(f *testing.F) {
	s := goldenSigner(f)
	v := s.Public()
	for _, seed := range []string{
		goldenUser, goldenTFA, goldenEncoded, "", ":", "::", ":::", "::::", "PBS:root@pam:5F5E1000::",
		"PBS:root@pam:5F5E1000:x", "PBS:%3A:5F5E1000::AAAA", "PBS:%zz:FFFFFFFFFFFFFFFF::AAAA",
		"PBS:root@pam:5f5e1000::AAAA", replaceSig(goldenUser, "=="), strings.Replace(goldenUser, "root", "r%C3%BCt", 1),
	} {
		f.Add(seed)
	}
	c := NewCache(v, 4)
	f.Fuzz(func(t *testing.T, tk string) {
		check := func(what, got string, err error) {
			if err != nil {
				if !wrapsOne(err) {
					t.Fatalf("%s(%q) = %v: wraps %d sentinels; want 1", what, tk, err, countSentinels(err))
				}
				return
			}
			if tk != goldenUser && tk != goldenTFA && tk != goldenEncoded {
				t.Fatalf("%s(%q) = %q, nil: a ticket this key never signed verified", what, tk, got)
			}
		}
		u, _, err := v.VerifyUser(tk, "PBS", t0)
		check("VerifyUser", u, err)
		u, _, err = c.VerifyUser(tk, "PBS", 1, t0)
		check("Cache.VerifyUser", u, err)
		ch, _, err := v.VerifyTFA(tk, "PBS", "root@pam", t0)
		check("VerifyTFA", ch, err)
		d, _, err := v.Verify(tk, "PBS", "", FullLifetime, FullMaxFuture, t0)
		check("Verify", d, err)
		if info := Info(tk); info != "" && !strings.HasPrefix(tk, info) {
			t.Fatalf("Info(%q) = %q: not a prefix of the ticket", tk, info)
		}
	})
}

func countSentinels(err error) int {
	n := 0
	for _, s := range sentinels {
		if errors.Is(err, s) {
			n++
		}
	}
	return n
}

// FuzzRoundTrip signs arbitrary prefix, data and aad: Sign either refuses with ErrMalformed or
// makes a ticket that verifies to exactly the same data, and to nothing else with another aad.
func FuzzRoundTrip(f *testing.F) {
	s := goldenSigner(f)
	v := s.Public()
	f.Add("PBS", "root@pam", "", int64(goldenTime))
	f.Add("PBS", `!tfa!{"a":1}`, "root@pam", int64(0))
	f.Add("P:BS", "jü:r\x00gen", "a:b", int64(-1))
	f.Add("%", "%3A", "", int64(1<<40))
	f.Fuzz(func(t *testing.T, prefix, data, aad string, sec int64) {
		now := time.Unix(sec, 0)
		tk, err := s.Sign(prefix, data, aad, now)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("Sign(%q, %q, %q) = %v; want nil or ErrMalformed", prefix, data, aad, err)
			}
			return
		}
		got, issued, err := v.Verify(tk, prefix, aad, FullLifetime, FullMaxFuture, now)
		if err != nil || got != data || issued.Unix() != sec {
			t.Fatalf("Verify(Sign(%q, %q, %q)) = %q, %v, %v; want %q, %d, nil", prefix, data, aad, got, issued.Unix(), err, data, sec)
		}
		if _, _, err := v.Verify(tk, prefix, aad+"x", FullLifetime, FullMaxFuture, now); !errors.Is(err, ErrSignature) {
			t.Fatalf("Verify(Sign(%q, %q, %q)) with aad+x = %v; want ErrSignature", prefix, data, aad, err)
		}
	})
}

// FuzzCSRFCheck feeds arbitrary tokens and user ids to Check: no panic, every error wraps
// ErrCSRF, and only the two golden tokens for root@pam verify; Token round trips for any user.
func FuzzCSRFCheck(f *testing.F) {
	k := goldenCSRFKey(f)
	for _, seed := range []string{goldenCSRF, goldenCSRFLegacy, "", ":", "invalid", "5F5E1000:", goldenCSRF + "=", "5f5e1000:" + goldenCSRF[9:]} {
		f.Add(seed, "root@pam")
	}
	f.Fuzz(func(t *testing.T, token, userid string) {
		if len(userid) > 4*authid.MaxUseridLen {
			// Real user ids are at most 64 bytes; megabyte ones only make the minimizer crawl.
			userid = userid[:4*authid.MaxUseridLen]
		}
		err := k.Check(token, userid, t0)
		if err != nil && !errors.Is(err, ErrCSRF) {
			t.Fatalf("Check(%q, %q) = %v; want nil or ErrCSRF", token, userid, err)
		}
		if err == nil && (userid != "root@pam" || (token != goldenCSRF && token != goldenCSRFLegacy)) {
			t.Fatalf("Check(%q, %q) = nil: a token never made with this key verified", token, userid)
		}
		if err := k.Check(k.Token(userid, t0), userid, t0); err != nil {
			t.Fatalf("Check(Token(%q)) = %v; want nil", userid, err)
		}
	})
}

// FuzzParseKeys feeds arbitrary bytes to the key file parsers: no panic, every error wraps
// ErrBadKey.
func FuzzParseKeys(f *testing.F) {
	f.Add([]byte(goldenCSRFFile))
	f.Add([]byte("-----BEGIN PUBLIC KEY-----\n" + goldenPub + "\n-----END PUBLIC KEY-----\n"))
	f.Add([]byte("-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIAABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f\n-----END PRIVATE KEY-----\n"))
	f.Add([]byte("-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if _, err := ParseSigner(data); err != nil && !errors.Is(err, ErrBadKey) {
			t.Fatalf("ParseSigner(%q) = %v; want nil or ErrBadKey", data, err)
		}
		if _, err := ParseVerifier(data); err != nil && !errors.Is(err, ErrBadKey) {
			t.Fatalf("ParseVerifier(%q) = %v; want nil or ErrBadKey", data, err)
		}
		if _, err := ParseCSRFKey(data); err != nil && !errors.Is(err, ErrBadKey) {
			t.Fatalf("ParseCSRFKey(%q) = %v; want nil or ErrBadKey", data, err)
		}
	})
}

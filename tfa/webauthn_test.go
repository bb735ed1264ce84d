package tfa

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/descope/virtualwebauthn"
)

// relying parties the tests register against: a local one (http allowed) and a public one.
var (
	localRP  = WebauthnConfig{RP: "Gatehouse", ID: "localhost", Origin: "http://localhost:8007"}
	publicRP = WebauthnConfig{RP: "Gatehouse", ID: "gate.example.com", Origin: "https://gate.example.com:8007"}
)

// authenticator is a browser with a software authenticator holding one credential.
type authenticator struct {
	rp   virtualwebauthn.RelyingParty
	auth virtualwebauthn.Authenticator
}

func newAuthenticator(t testing.TB, wc WebauthnConfig, userid string) *authenticator {
	a := &authenticator{
		rp:   virtualwebauthn.RelyingParty{Name: wc.RP, ID: wc.ID, Origin: wc.Origin},
		auth: virtualwebauthn.NewAuthenticatorWithOptions(virtualwebauthn.AuthenticatorOptions{UserHandle: []byte(userid)}),
	}
	a.auth.AddCredential(newCredential(t))
	return a
}

// newCredential makes an EC2 (P-256) credential. virtualwebauthn encodes the coordinates
// without their leading zero bytes, which go-webauthn rightly refuses, so keys with such a
// coordinate (1 in 128) are skipped rather than making the tests flaky.
func newCredential(t testing.TB) virtualwebauthn.Credential {
	t.Helper()
	for {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		pub, err := k.PublicKey.Bytes() // 0x04 || X || Y, 32 bytes each
		if err != nil {
			t.Fatal(err)
		}
		if pub[1] == 0 || pub[33] == 0 {
			continue
		}
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return virtualwebauthn.NewCredentialWithImportedKey(virtualwebauthn.KeyTypeEC2, der)
	}
}

// cred is the authenticator's credential (a pointer: its counter may be changed).
func (a *authenticator) cred() *virtualwebauthn.Credential { return &a.auth.Credentials[0] }

// publicKeyChallenge returns the publicKey.challenge string of options JSON.
func publicKeyChallenge(t testing.TB, options string) string {
	t.Helper()
	var o struct {
		PublicKey struct {
			Challenge string `json:"challenge"`
		} `json:"publicKey"`
	}
	if err := json.Unmarshal([]byte(options), &o); err != nil || o.PublicKey.Challenge == "" {
		t.Fatalf("options %s: no publicKey.challenge (%v)", options, err)
	}
	return o.PublicKey.Challenge
}

// attest answers registration options: the challenge string and the response JSON.
func (a *authenticator) attest(t testing.TB, options string) (challenge, response string) {
	t.Helper()
	ao, err := virtualwebauthn.ParseAttestationOptions(options)
	if err != nil {
		t.Fatalf("ParseAttestationOptions(%s) = %v", options, err)
	}
	return publicKeyChallenge(t, options), virtualwebauthn.CreateAttestationResponse(a.rp, a.auth, *a.cred(), *ao)
}

// register registers a's credential for userid and returns the entry id.
func (a *authenticator) register(t testing.TB, m *Manager, userid string, now time.Time) string {
	t.Helper()
	options, err := m.BeginRegistration(userid, "key of "+userid, now)
	if err != nil {
		t.Fatalf("BeginRegistration(%s) = %v", userid, err)
	}
	ch, resp := a.attest(t, options)
	id, err := m.FinishRegistration(userid, ch, resp, now)
	if err != nil {
		t.Fatalf("FinishRegistration(%s) = %v", userid, err)
	}
	return id
}

// answer answers a login challenge (Challenge's JSON) the way PBS's clients do: the assertion
// with a "challenge" member added, after "webauthn:".
func (a *authenticator) answer(t testing.TB, challenge string) string {
	t.Helper()
	wa := jsonMember(t, challenge, "webauthn")
	if wa == nil {
		t.Fatalf("challenge %s offers no webauthn", challenge)
	}
	ao, err := virtualwebauthn.ParseAssertionOptions(string(wa))
	if err != nil {
		t.Fatalf("ParseAssertionOptions(%s) = %v", wa, err)
	}
	cred := a.auth.FindAllowedCredential(*ao)
	if cred == nil {
		t.Fatalf("challenge %s does not allow the authenticator's credential", wa)
	}
	return withChallenge(t, virtualwebauthn.CreateAssertionResponse(a.rp, a.auth, *cred, *ao), publicKeyChallenge(t, string(wa)))
}

// withChallenge returns "webauthn:" and the response object with member challenge set.
func withChallenge(t testing.TB, response, challenge string) string {
	t.Helper()
	var obj map[string]any
	if err := json.Unmarshal([]byte(response), &obj); err != nil {
		t.Fatal(err)
	}
	obj["challenge"] = challenge
	b, err := json.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	return "webauthn:" + string(b)
}

// newWebauthnManager returns a Manager with relying party wc.
func newWebauthnManager(t testing.TB, wc WebauthnConfig) *Manager {
	t.Helper()
	m := newManager(t, nil)
	if err := m.SetWebauthn(wc); err != nil {
		t.Fatalf("SetWebauthn(%+v) = %v", wc, err)
	}
	return m
}

func TestWebauthnRegisterAndLogin(t *testing.T) {
	t.Parallel()
	for _, wc := range []WebauthnConfig{localRP, publicRP} {
		t.Run(wc.ID, func(t *testing.T) {
			t.Parallel()
			m := newWebauthnManager(t, wc)
			a := newAuthenticator(t, wc, alice)

			options, err := m.BeginRegistration(alice, "yubikey", t0)
			if err != nil {
				t.Fatal(err)
			}
			var o struct {
				PublicKey struct {
					RP   struct{ ID, Name string }
					User struct{ ID string }
				}
			}
			if err := json.Unmarshal([]byte(options), &o); err != nil {
				t.Fatal(err)
			}
			if o.PublicKey.RP.ID != wc.ID || o.PublicKey.RP.Name != wc.RP || o.PublicKey.User.ID != base64.RawURLEncoding.EncodeToString([]byte(alice)) {
				t.Errorf("registration options %s: want rp %s/%s and the user id as handle", options, wc.ID, wc.RP)
			}
			ch, resp := a.attest(t, options)
			id, err := m.FinishRegistration(alice, ch, resp, t0.Add(10*time.Second))
			if err != nil {
				t.Fatalf("FinishRegistration = %v", err)
			}
			c := config(t, m)
			entries := c.Summary(alice, t0).Entries
			if len(entries) != 1 || entries[0].Type != "webauthn" || entries[0].ID != id || entries[0].Description != "yubikey" || entries[0].Created != t0.Add(10*time.Second).Unix() {
				t.Fatalf("entries after registration = %+v; want the webauthn entry %s", entries, id)
			}
			cred, err := c.Users[alice].Webauthn[0].Credential()
			if err != nil || !bytes.Equal(cred.ID, a.cred().ID) {
				t.Fatalf("stored credential = %+v, %v; want the authenticator's", cred, err)
			}
			if _, err := os.Stat(m.statePath(alice)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("state file after the registration: %v; want none (nothing pending)", err)
			}

			now := t0.Add(time.Hour)
			chal := challenge(t, m, alice, now)
			if chal == "" || strings.Contains(chal, `"totp"`) || strings.Contains(chal, `"recovery"`) {
				t.Fatalf("Challenge = %s; want webauthn only", chal)
			}
			resp = a.answer(t, chal)
			if err := m.Verify(alice, chal, resp, now.Add(5*time.Second)); err != nil {
				t.Fatalf("Verify = %v", err)
			}
			if err := m.Verify(alice, chal, resp, now.Add(6*time.Second)); !errors.Is(err, ErrFailed) {
				t.Errorf("replayed response: Verify = %v; want ErrFailed", err)
			}
			// A second login with a new challenge works, and records the signature counter.
			a.cred().Counter = 5
			chal = challenge(t, m, alice, now)
			if err := m.Verify(alice, chal, a.answer(t, chal), now); err != nil {
				t.Fatalf("second login: Verify = %v", err)
			}
			cred, err = config(t, m).Users[alice].Webauthn[0].Credential()
			if err != nil || cred.Authenticator.SignCount != 5 {
				t.Errorf("stored sign count = %v (%v); want 5", cred.Authenticator.SignCount, err)
			}
			// A counter going backwards means a cloned authenticator.
			a.cred().Counter = 3
			chal = challenge(t, m, alice, now)
			if err := m.Verify(alice, chal, a.answer(t, chal), now); !errors.Is(err, ErrFailed) {
				t.Errorf("counter 5 then 3: Verify = %v; want ErrFailed", err)
			}
		})
	}
}

// TestWebauthnMixedFactors: a user with webauthn, totp and recovery gets all three in the
// challenge and may answer with any.
func TestWebauthnMixedFactors(t *testing.T) {
	t.Parallel()
	m := newWebauthnManager(t, publicRP)
	a := newAuthenticator(t, publicRP, alice)
	a.register(t, m, alice, t0)
	raw := enrolTOTP(t, m, alice, t0)
	codes, err := m.AddRecovery(alice, t0)
	if err != nil {
		t.Fatal(err)
	}
	now := t0.Add(time.Hour)
	chal := challenge(t, m, alice, now)
	var ch map[string]json.RawMessage
	if err := json.Unmarshal([]byte(chal), &ch); err != nil {
		t.Fatal(err)
	}
	if string(ch["totp"]) != "true" || string(ch["recovery"]) != "[0,1,2,3,4,5,6,7,8,9]" || ch["webauthn"] == nil {
		t.Errorf("Challenge = %s; want totp, recovery and webauthn", chal)
	}
	if err := m.Verify(alice, chal, "totp:"+code(t, raw, now), now); err != nil {
		t.Errorf("totp answer: Verify = %v", err)
	}
	if err := m.Verify(alice, chal, "recovery:"+codes[0], now); err != nil {
		t.Errorf("recovery answer: Verify = %v", err)
	}
	if err := m.Verify(alice, chal, a.answer(t, chal), now); err != nil {
		t.Errorf("webauthn answer to the same challenge: Verify = %v", err)
	}
	// A ticket whose challenge offered no webauthn cannot be answered with it.
	chal = challenge(t, m, alice, now)
	resp := a.answer(t, chal)
	if err := m.Verify(alice, `{"totp":true}`, resp, now); !errors.Is(err, ErrFailed) {
		t.Errorf("webauthn answer to a challenge without webauthn: Verify = %v; want ErrFailed", err)
	}
}

func TestWebauthnChallengeTimeout(t *testing.T) {
	t.Parallel()
	m := newWebauthnManager(t, localRP)
	a := newAuthenticator(t, localRP, alice)
	a.register(t, m, alice, t0)
	now := t0.Add(time.Hour)
	chal := challenge(t, m, alice, now)
	if err := m.Verify(alice, chal, a.answer(t, chal), now.Add(2*time.Minute+time.Second)); !errors.Is(err, ErrFailed) {
		t.Errorf("answer after 2m1s: Verify = %v; want ErrFailed", err)
	}
	chal = challenge(t, m, alice, now)
	if err := m.Verify(alice, chal, a.answer(t, chal), now.Add(2*time.Minute-time.Second)); err != nil {
		t.Errorf("answer after 1m59s: Verify = %v; want nil", err)
	}
}

// TestWebauthnOtherUser: an answer to one user's challenge does not log in another.
func TestWebauthnOtherUser(t *testing.T) {
	t.Parallel()
	m := newWebauthnManager(t, publicRP)
	a, b := newAuthenticator(t, publicRP, alice), newAuthenticator(t, publicRP, bob)
	a.register(t, m, alice, t0)
	b.register(t, m, bob, t0)
	now := t0.Add(time.Hour)
	chA, chB := challenge(t, m, alice, now), challenge(t, m, bob, now)
	respA := a.answer(t, chA)
	if err := m.Verify(bob, chA, respA, now); !errors.Is(err, ErrFailed) {
		t.Errorf("alice's challenge and answer for bob: Verify = %v; want ErrFailed", err)
	}
	if err := m.Verify(bob, chB, respA, now); !errors.Is(err, ErrFailed) {
		t.Errorf("bob's challenge, alice's answer: Verify = %v; want ErrFailed", err)
	}
	// Alice's assertion relabelled with bob's pending challenge: signed over the wrong
	// challenge, by a credential that is not bob's.
	var obj map[string]any
	if err := json.Unmarshal([]byte(strings.TrimPrefix(respA, "webauthn:")), &obj); err != nil {
		t.Fatal(err)
	}
	delete(obj, "challenge")
	rest, _ := json.Marshal(obj)
	if err := m.Verify(bob, chB, withChallenge(t, string(rest), publicKeyChallenge(t, string(jsonMember(t, chB, "webauthn")))), now); !errors.Is(err, ErrFailed) {
		t.Errorf("alice's assertion labelled with bob's challenge: Verify = %v; want ErrFailed", err)
	}
	// Alice's own login was not disturbed.
	if err := m.Verify(alice, chA, respA, now); err != nil {
		t.Errorf("alice's answer for alice: Verify = %v; want nil", err)
	}
	// Bob's credential signing alice's challenge does not log in alice.
	chA = challenge(t, m, alice, now)
	chB = challenge(t, m, bob, now)
	wrong := b.answer(t, chB)
	if err := m.Verify(alice, chA, strings.Replace(wrong, publicKeyChallenge(t, string(jsonMember(t, chB, "webauthn"))),
		publicKeyChallenge(t, string(jsonMember(t, chA, "webauthn"))), 1), now); !errors.Is(err, ErrFailed) {
		t.Errorf("bob's credential for alice: Verify = %v; want ErrFailed", err)
	}
}

func TestWebauthnRegistrationRefused(t *testing.T) {
	t.Parallel()
	m := newWebauthnManager(t, publicRP)
	a := newAuthenticator(t, publicRP, alice)
	options, err := m.BeginRegistration(alice, "key", t0)
	if err != nil {
		t.Fatal(err)
	}
	ch, resp := a.attest(t, options)
	if _, err := m.FinishRegistration(bob, ch, resp, t0); !errors.Is(err, ErrInvalid) {
		t.Errorf("alice's registration finished as bob: %v; want ErrInvalid", err)
	}
	if _, err := m.FinishRegistration(alice, "AAAA", resp, t0); !errors.Is(err, ErrInvalid) {
		t.Errorf("unknown challenge: %v; want ErrInvalid", err)
	}
	if _, err := m.FinishRegistration(alice, ch, resp, t0.Add(2*time.Minute+time.Second)); !errors.Is(err, ErrInvalid) {
		t.Errorf("registration after 2m1s: %v; want ErrInvalid", err)
	}

	options, err = m.BeginRegistration(alice, "key", t0)
	if err != nil {
		t.Fatal(err)
	}
	ch, resp = a.attest(t, options)
	if _, err := m.FinishRegistration(alice, ch, resp, t0.Add(time.Minute)); err != nil {
		t.Fatalf("FinishRegistration = %v", err)
	}
	if _, err := m.FinishRegistration(alice, ch, resp, t0.Add(time.Minute)); !errors.Is(err, ErrInvalid) {
		t.Errorf("registration challenge used twice: %v; want ErrInvalid", err)
	}
	// The same authenticator again, with a new challenge.
	options, err = m.BeginRegistration(alice, "again", t0)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(options, base64.RawURLEncoding.EncodeToString(a.cred().ID)) {
		t.Errorf("options %s do not exclude the registered credential", options)
	}
	ch, resp = a.attest(t, options)
	if _, err := m.FinishRegistration(alice, ch, resp, t0); !errors.Is(err, ErrExists) {
		t.Errorf("credential registered twice: %v; want ErrExists", err)
	}

	// Broken responses and a foreign origin, each consuming its challenge.
	evil := newAuthenticator(t, WebauthnConfig{RP: "Gatehouse", ID: publicRP.ID, Origin: "https://evil.example.org"}, alice)
	other := newAuthenticator(t, WebauthnConfig{RP: "Gatehouse", ID: "example.org", Origin: publicRP.Origin}, alice)
	for name, respond := range map[string]func(options string) (string, string){
		"garbage":      func(o string) (string, string) { return publicKeyChallenge(t, o), "{" },
		"empty object": func(o string) (string, string) { return publicKeyChallenge(t, o), "{}" },
		"wrong origin": evil.attestFunc(t),
		"wrong rp id":  other.attestFunc(t),
		"tampered data": func(o string) (string, string) {
			c, r := newAuthenticator(t, publicRP, alice).attest(t, o)
			return c, tamper(t, r)
		},
	} {
		options, err := m.BeginRegistration(alice, name, t0)
		if err != nil {
			t.Fatal(err)
		}
		ch, resp := respond(options)
		if _, err := m.FinishRegistration(alice, ch, resp, t0); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: FinishRegistration = %v; want ErrInvalid", name, err)
		}
		if _, err := m.FinishRegistration(alice, ch, resp, t0); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "no such") {
			t.Errorf("%s: challenge not consumed: FinishRegistration = %v", name, err)
		}
	}
	if n := len(config(t, m).Users[alice].Webauthn); n != 1 {
		t.Errorf("%d webauthn entries; want 1", n)
	}
}

// attestFunc is attest as a function of the options.
func (a *authenticator) attestFunc(t testing.TB) func(string) (string, string) {
	return func(options string) (string, string) { return a.attest(t, options) }
}

// tamper flips a byte in the middle of a response's attestation object.
func tamper(t testing.TB, response string) string {
	t.Helper()
	var r struct {
		Type     string            `json:"type"`
		ID       string            `json:"id"`
		RawID    string            `json:"rawId"`
		Response map[string]string `json:"response"`
	}
	if err := json.Unmarshal([]byte(response), &r); err != nil {
		t.Fatal(err)
	}
	ao, err := base64.RawURLEncoding.DecodeString(r.Response["attestationObject"])
	if err != nil {
		t.Fatal(err)
	}
	ao[len(ao)-20] ^= 1 // inside the signature
	r.Response["attestationObject"] = base64.RawURLEncoding.EncodeToString(ao)
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestWebauthnLoginRefused(t *testing.T) {
	t.Parallel()
	m := newWebauthnManager(t, publicRP)
	a := newAuthenticator(t, publicRP, alice)
	a.register(t, m, alice, t0)
	now := t0.Add(time.Hour)
	evil := &authenticator{rp: virtualwebauthn.RelyingParty{Name: "x", ID: publicRP.ID, Origin: "https://evil.example.org"}, auth: a.auth}
	tests := map[string]func(ch string) string{
		"wrong origin": evil.answerFunc(t),
		"no challenge": func(ch string) string {
			var obj map[string]any
			if err := json.Unmarshal([]byte(strings.TrimPrefix(a.answer(t, ch), "webauthn:")), &obj); err != nil {
				t.Fatal(err)
			}
			delete(obj, "challenge")
			b, _ := json.Marshal(obj)
			return "webauthn:" + string(b)
		},
		"not json":          func(string) string { return "webauthn:{" },
		"json array":        func(string) string { return "webauthn:[]" },
		"unknown challenge": func(ch string) string { return withChallenge(t, `{"id":"x"}`, "AAAA") },
		"bad signature": func(ch string) string {
			resp := a.answer(t, ch)
			var obj map[string]any
			if err := json.Unmarshal([]byte(strings.TrimPrefix(resp, "webauthn:")), &obj); err != nil {
				t.Fatal(err)
			}
			r := obj["response"].(map[string]any)
			sig, _ := base64.RawURLEncoding.DecodeString(r["signature"].(string))
			sig[len(sig)-1] ^= 1
			r["signature"] = base64.RawURLEncoding.EncodeToString(sig)
			b, _ := json.Marshal(obj)
			return "webauthn:" + string(b)
		},
	}
	for name, answer := range tests {
		chal := challenge(t, m, alice, now)
		if err := m.Verify(alice, chal, answer(chal), now); !errors.Is(err, ErrFailed) {
			t.Errorf("%s: Verify = %v; want ErrFailed", name, err)
		}
	}
	chal := challenge(t, m, alice, now)
	if err := m.Verify(alice, chal, a.answer(t, chal), now); err != nil {
		t.Errorf("good answer after the refused ones: Verify = %v", err)
	}
	// Disabled: no longer offered nor accepted.
	id := config(t, m).Users[alice].Webauthn[0].ID
	off := false
	if err := m.Update(alice, id, nil, &off); err != nil {
		t.Fatal(err)
	}
	if got := challenge(t, m, alice, now); got != "" {
		t.Errorf("Challenge with the only key disabled = %s; want \"\"", got)
	}
	if err := m.Verify(alice, chal, a.answer(t, chal), now); !errors.Is(err, ErrFailed) {
		t.Errorf("disabled key: Verify = %v; want ErrFailed", err)
	}
}

// answerFunc is answer as a function of the challenge.
func (a *authenticator) answerFunc(t testing.TB) func(string) string {
	return func(ch string) string { return a.answer(t, ch) }
}

func TestWebauthnConfig(t *testing.T) {
	t.Parallel()
	m := newManager(t, nil)
	if _, err := m.BeginRegistration(alice, "key", t0); !errors.Is(err, ErrInvalid) {
		t.Errorf("BeginRegistration without a relying party = %v; want ErrInvalid", err)
	}
	if _, err := m.FinishRegistration(alice, "AAAA", "{}", t0); !errors.Is(err, ErrInvalid) {
		t.Errorf("FinishRegistration without a relying party = %v; want ErrInvalid", err)
	}
	for _, wc := range []WebauthnConfig{
		{RP: "", ID: "gate.example.com", Origin: "https://gate.example.com"},
		{RP: "G", ID: "", Origin: "https://gate.example.com"},
		{RP: "G", ID: "gate.example.com", Origin: ""},
		{RP: "G", ID: "gate.example.com", Origin: "http://gate.example.com"},
		{RP: "G", ID: "gate.example.com", Origin: "https://gate.example.com/login"},
		{RP: "G", ID: "gate.example.com", Origin: "https://gate.example.com?x=1"},
		{RP: "G", ID: "gate.example.com", Origin: "https://user@gate.example.com"},
		{RP: "G", ID: "gate.example.com", Origin: "https://evil.example.com"},
		{RP: "G", ID: "example.com", Origin: "https://gateexample.com"},
		{RP: "G", ID: "sub.gate.example.com", Origin: "https://gate.example.com"},
		{RP: "G", ID: "gate.example.com", Origin: "gate.example.com"},
	} {
		if err := m.SetWebauthn(wc); !errors.Is(err, ErrInvalid) {
			t.Errorf("SetWebauthn(%+v) = %v; want ErrInvalid", wc, err)
		}
	}
	if _, err := os.Stat(m.Path()); err == nil {
		t.Errorf("refused SetWebauthn wrote tfa.json")
	}
	for _, wc := range []WebauthnConfig{
		localRP, publicRP,
		{RP: "G", ID: "example.com", Origin: "https://gate.example.com"},
		{RP: "G", ID: "gate.example.com", Origin: "https://gate.example.com:8007"},
	} {
		if err := m.SetWebauthn(wc); err != nil {
			t.Errorf("SetWebauthn(%+v) = %v; want nil", wc, err)
		}
		if got := config(t, m).Webauthn; got == nil || *got != wc {
			t.Errorf("after SetWebauthn(%+v) config has %+v", wc, got)
		}
	}
	// After the relying party moves, an assertion made for the old one is refused. (A real
	// authenticator would not even offer the credential to the new one; the software one
	// would, so that is not tested.)
	m2 := newWebauthnManager(t, publicRP)
	a := newAuthenticator(t, publicRP, alice)
	a.register(t, m2, alice, t0)
	moved := WebauthnConfig{RP: "Gatehouse", ID: "other.example.net", Origin: "https://other.example.net"}
	if err := m2.SetWebauthn(moved); err != nil {
		t.Fatal(err)
	}
	chal := challenge(t, m2, alice, t0)
	if err := m2.Verify(alice, chal, a.answer(t, chal), t0); !errors.Is(err, ErrFailed) {
		t.Errorf("assertion for the old relying party: Verify = %v; want ErrFailed", err)
	}
}

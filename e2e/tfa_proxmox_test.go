package e2e

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	proxmox "github.com/luthermonson/go-proxmox"
)

// TestTFAProxmoxClient logs in with TOTP through github.com/luthermonson/go-proxmox: in one
// call with WithOTP (Proxmox VE's otp parameter), and in PBS's two steps driven through the
// client's own Ticket and Post.
func TestTFAProxmoxClient(t *testing.T) {
	st := start(t, options{})
	s0 := totpStep()
	ctx := context.Background()
	hc := &http.Client{Transport: pbsNames{st.http.Transport}}
	base := strings.TrimSuffix(st.url, "/")
	keys := map[string]otpKey{}
	for _, user := range []string{"olga@pbs", "paul@pbs"} {
		pw := strings.TrimSuffix(user, "@pbs") + "-pass-1"
		st.addUser(t, user, pw)
		keys[user] = newOTPKey(t)
		st.enrolTOTP(t, st.login(t, user, pw), pw, keys[user], keys[user].code(t, s0))
	}
	olga := &proxmox.Credentials{Username: "olga@pbs", Password: "olga-pass-1"}

	t.Run("WithOTP", func(t *testing.T) {
		// Without a code the client gets only the challenge ticket, which opens nothing.
		c := proxmox.NewClient(base, proxmox.WithHTTPClient(hc), proxmox.WithCredentials(olga))
		if _, err := c.Version(ctx); err == nil {
			t.Error("Version without a second factor succeeded")
		}
		if s := c.Session(); s == nil || !strings.HasPrefix(s.Ticket, "PBS:!tfa!") || s.CSRFPreventionToken != "invalid" {
			t.Errorf("session without a second factor = %+v; want a PBS:!tfa! ticket", s)
		}
		wrong := proxmox.NewClient(base, proxmox.WithHTTPClient(hc), proxmox.WithCredentials(olga),
			proxmox.WithOTP(keys["olga@pbs"].wrongCodes(t, s0, 1)[0]))
		if _, err := wrong.Version(ctx); err == nil {
			t.Error("Version with a wrong OTP succeeded")
		}

		code := keys["olga@pbs"].code(t, s0+1)
		c = proxmox.NewClient(base, proxmox.WithHTTPClient(hc), proxmox.WithCredentials(olga), proxmox.WithOTP(code))
		v, err := c.Version(ctx)
		if err != nil {
			t.Fatalf("Version with WithOTP: %v", err)
		}
		if v.Version == "" {
			t.Errorf("Version = %+v", v)
		}
		if s := c.Session(); s == nil || !strings.HasPrefix(s.Ticket, "PBS:olga@pbs:") {
			t.Errorf("session = %+v; want a full ticket for olga", s)
		}
		// The session renews without a second factor.
		if err := c.RefreshTicket(ctx); err != nil {
			t.Errorf("RefreshTicket: %v", err)
		}
		if _, err := c.Version(ctx); err != nil {
			t.Errorf("Version after renewal: %v", err)
		}
		// The code was used.
		again := proxmox.NewClient(base, proxmox.WithHTTPClient(hc), proxmox.WithCredentials(olga), proxmox.WithOTP(code))
		if _, err := again.Version(ctx); err == nil {
			t.Error("Version with a used OTP succeeded")
		}
	})

	t.Run("two steps", func(t *testing.T) {
		c := proxmox.NewClient(base, proxmox.WithHTTPClient(hc))
		// Ticket's own return value may be the session from before the call (it returns
		// c.session alongside a call that replaces it); Session is the client's current one.
		if _, err := c.Ticket(ctx, &proxmox.Credentials{Username: "paul@pbs", Password: "paul-pass-1"}); err != nil {
			t.Fatalf("Ticket: %v", err)
		}
		s := c.Session()
		if s == nil || !strings.HasPrefix(s.Ticket, "PBS:!tfa!") || s.CSRFPreventionToken != "invalid" || s.Username != "paul@pbs" {
			t.Fatalf("session after the first step = %+v; want a PBS:!tfa! ticket", s)
		}
		challenge := challengeOf(t, s.Ticket)
		if !challenge.TOTP {
			t.Errorf("challenge = %s; want totp", challenge.raw)
		}
		if _, err := c.Version(ctx); !errors.Is(err, proxmox.ErrNotAuthorized) {
			t.Errorf("Version with the challenge ticket: %v; want ErrNotAuthorized", err)
		}
		// The second step, answered into the client's live session.
		err := c.Post(ctx, "/access/ticket", map[string]string{
			"username": "paul@pbs", "password": "totp:" + keys["paul@pbs"].code(t, s0+1), "tfa-challenge": s.Ticket,
		}, s)
		if err != nil {
			t.Fatalf("second step: %v", err)
		}
		if !strings.HasPrefix(s.Ticket, "PBS:paul@pbs:") || s.CSRFPreventionToken == "invalid" {
			t.Fatalf("session after the second step = %+v; want a full ticket", s)
		}
		if _, err := c.Version(ctx); err != nil {
			t.Errorf("Version after the second step: %v", err)
		}
		other := proxmox.NewClient(base, proxmox.WithHTTPClient(hc), proxmox.WithSession(s.Ticket, s.CSRFPreventionToken))
		if _, err := other.Version(ctx); err != nil {
			t.Errorf("Version in a new client with the second step's ticket: %v", err)
		}
	})
}

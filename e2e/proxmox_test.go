package e2e

import (
	"context"
	"net/http"
	"strings"
	"testing"

	proxmox "github.com/luthermonson/go-proxmox"
)

// pbsNames turns the names go-proxmox uses for Proxmox VE into PBS's: the PVEAuthCookie
// cookie and the "PVEAPIToken=<id>=<secret>" header. The client is otherwise unmodified.
type pbsNames struct{ next http.RoundTripper }

func (p pbsNames) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	if c := r.Header.Get("Cookie"); c != "" {
		r.Header.Set("Cookie", strings.ReplaceAll(c, "PVEAuthCookie=", "PBSAuthCookie="))
	}
	if a, ok := strings.CutPrefix(r.Header.Get("Authorization"), "PVEAPIToken="); ok {
		id, secret, _ := strings.Cut(a, "=")
		r.Header.Set("Authorization", "PBSAPIToken="+id+":"+secret)
	}
	return p.next.RoundTrip(r)
}

// TestProxmoxClient drives Gatehouse with github.com/luthermonson/go-proxmox, a real Proxmox
// client: password login, ticket renewal, /version, and an API token.
func TestProxmoxClient(t *testing.T) {
	st := start(t, options{})
	st.addUser(t, "ivan@pbs", "ivan-pass-1")
	ctx := context.Background()
	hc := &http.Client{Transport: pbsNames{st.http.Transport}}
	base := strings.TrimSuffix(st.url, "/")

	c := proxmox.NewClient(base, proxmox.WithHTTPClient(hc),
		proxmox.WithCredentials(&proxmox.Credentials{Username: "ivan@pbs", Password: "ivan-pass-1"}))
	v, err := c.Version(ctx)
	if err != nil {
		t.Fatalf("Version after password login: %v", err)
	}
	if v.Version == "" || v.Release == "" {
		t.Errorf("Version = %+v; want version and release", v)
	}
	first := c.Session()
	if first == nil || !strings.HasPrefix(first.Ticket, "PBS:ivan@pbs:") {
		t.Fatalf("session = %+v; want a PBS ticket for ivan@pbs", first)
	}
	firstTicket := first.Ticket
	if err := c.RefreshTicket(ctx); err != nil {
		t.Fatalf("RefreshTicket: %v", err)
	}
	if s := c.Session(); s == nil || s.Ticket == "" || s.Username != "ivan@pbs" {
		t.Fatalf("session after renewal = %+v", s)
	}
	_ = firstTicket
	if _, err := c.Version(ctx); err != nil {
		t.Fatalf("Version after renewal: %v", err)
	}

	a := st.admin(t, call{method: "POST", path: "/access/users/ivan@pbs/token/go"})
	var tok struct{ Tokenid, Value string }
	a.decode(t, &tok)
	tc := proxmox.NewClient(base, proxmox.WithHTTPClient(hc), proxmox.WithAPIToken(tok.Tokenid, tok.Value))
	if _, err := tc.Version(ctx); err != nil {
		t.Fatalf("Version with an API token: %v", err)
	}
	bad := proxmox.NewClient(base, proxmox.WithHTTPClient(hc), proxmox.WithAPIToken(tok.Tokenid, "wrong"))
	if _, err := bad.Version(ctx); err == nil {
		t.Error("Version with a wrong token secret succeeded")
	}
}

package realm

import (
	"errors"
	"testing"

	"gatehouse/authid"
)

func TestRealmsCheck(t *testing.T) {
	p := newPasswords(t)
	if err := p.Set("alice@pbs", "alice password"); err != nil {
		t.Fatal(err)
	}
	r := &Realms{Passwords: p}
	tests := []struct {
		userid, password string
		want             error // nil: success
	}{
		{"alice@pbs", "alice password", nil},
		{"alice@pbs", "not-it", ErrBadPassword},
		{"bob@pbs", "alice password", ErrBadPassword},
		{"alice@pbs", "", ErrInvalidPassword},
		{"alice@ldap1", "alice password", ErrNoRealm},
		{"alice@PBS", "alice password", ErrNoRealm},
		{"alice", "alice password", authid.ErrSyntax},
		{"alice@pbs!token", "alice password", authid.ErrSyntax},
		{"", "x", authid.ErrSyntax},
	}
	for _, tt := range tests {
		err := r.Check(tt.userid, tt.password)
		if tt.want == nil && err != nil || tt.want != nil && !errors.Is(err, tt.want) {
			t.Errorf("Realms.Check(%q) = %v; want %v", tt.userid, err, tt.want)
		}
		noSecret(t, err, tt.password)
	}
	var none Realms
	if err := none.Check("alice@pbs", "alice password"); !errors.Is(err, ErrNoRealm) {
		t.Errorf("Realms{}.Check(alice@pbs) = %v; want ErrNoRealm (pbs not configured)", err)
	}
}

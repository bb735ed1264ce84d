package gateway

import (
	"os/exec"
	"strings"
	"testing"
)

// TestProxydDeps: proxyd must not link the code that only apid may run: password checks and
// shadow.json writes (realm, which also brings PAM) and apid's handler (authority).
func TestProxydDeps(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "gatehouse/cmd/proxyd").Output()
	if err != nil {
		t.Fatalf("go list -deps gatehouse/cmd/proxyd: %v", err)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 10 {
		t.Fatalf("go list found only %v", deps)
	}
	seen := map[string]bool{}
	for _, d := range deps {
		seen[d] = true
	}
	if !seen["gatehouse/gateway"] {
		t.Fatalf("gatehouse/gateway not among proxyd's dependencies %v", deps)
	}
	for _, banned := range []string{"gatehouse/authority", "gatehouse/realm", "github.com/msteinert/pam/v2"} {
		if seen[banned] {
			t.Errorf("cmd/proxyd depends on %s, which only apid may use", banned)
		}
	}
}

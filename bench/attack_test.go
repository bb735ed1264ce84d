package main

import (
	"bytes"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestAttack runs the attacks with small numbers against proxyd with 2 s timeouts and caps of
// 8 per client: every phase refuses what is over the caps at once (proxyd counting exactly
// the connections the attacker saw refused), proxyd ends every connection it let in before
// the hold does (unfinished headers with 431), HTTP/2 streams over the cap get 503, and the
// legitimate client on another address is served throughout. Memory is reported, not judged.
func TestAttack(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the daemons and waits for proxyd's timeouts")
	}
	const cap = 8
	o := attackOptions{idle: 40, slow: 20, headers: 12, headerBytes: 64 << 10, h2conns: 12, h2streams: 20, hold: 20 * time.Second,
		proxydArgs: []string{"--read-header-timeout", "2s", "--read-timeout", "2s", "--write-timeout", "2s", "--idle-timeout", "2s",
			"--max-conns-per-client", "8", "--max-requests-per-client", "8"}}
	rep, err := runAttack(testWriter{t}, o)
	if err != nil {
		t.Fatal(err)
	}
	var md bytes.Buffer
	rep.markdown(&md)
	t.Logf("\n%s", md.String())
	want := []string{phaseIdle, phaseSlow, phaseHeaders, phaseStreams}
	if len(rep.Phases) != len(want) {
		t.Fatalf("runAttack() = %d phases; want %d", len(rep.Phases), len(want))
	}
	for i, p := range rep.Phases {
		if p.Name != want[i] {
			t.Errorf("phase %d = %q; want %q", i, p.Name, want[i])
		}
		if p.Admitted+p.Refused != p.Attempted || p.Admitted < 1 || p.Refused < 1 {
			t.Errorf("%s: %d let in, %d refused of %d; want both, adding up", p.Name, p.Admitted, p.Refused, p.Attempted)
		}
		if p.Admitted > cap {
			t.Errorf("%s: %d let in at once; want at most %d (--max-conns-per-client)", p.Name, p.Admitted, cap)
		}
		if p.ProxydRefused != uint64(p.Refused) {
			t.Errorf("%s: proxyd counted %d refused connections; the attacker saw %d", p.Name, p.ProxydRefused, p.Refused)
		}
		if p.ClosedByProxyd != p.Admitted {
			t.Errorf("%s: proxyd ended %d of the %d connections it let in before the hold did (%q)", p.Name, p.ClosedByProxyd, p.Admitted, p.StreamErrors)
		}
		if p.LegitFailed != 0 || p.LegitOK < 1 {
			t.Errorf("%s: legitimate requests %d ok, %d failed (%q); want all ok", p.Name, p.LegitOK, p.LegitFailed, p.LegitErrors)
		}
		if p.RSSBefore <= 0 || p.RSSPeak < p.RSSBefore || p.RSSAfter <= 0 || p.FDsPeak <= 0 || p.GoroutinesPeak <= 0 {
			t.Errorf("%s: RSS %d / %d / %d, %d files, %d goroutines; want measurements", p.Name, p.RSSBefore, p.RSSPeak, p.RSSAfter, p.FDsPeak, p.GoroutinesPeak)
		}
		switch p.Name {
		case phaseHeaders:
			if p.Status431 != p.Admitted {
				t.Errorf("%s: %d answers 431 of %d; want all", p.Name, p.Status431, p.Admitted)
			}
		case phaseStreams:
			if over := uint64(p.Admitted*o.h2streams - cap); p.Status503 < over {
				t.Errorf("%s: %d requests answered 503; want at least %d (all over --max-requests-per-client)", p.Name, p.Status503, over)
			}
		}
		if !strings.Contains(md.String(), "| "+p.Name+" |") {
			t.Errorf("markdown lacks the row %q", p.Name)
		}
	}
}

// TestUnitValues: what the attack applies to proxyd is what its systemd unit sets.
func TestUnitValues(t *testing.T) {
	data, err := os.ReadFile("../cmd/proxyd/gatehouse-proxyd.service")
	if err != nil {
		t.Fatal(err)
	}
	unit := string(data)
	for _, line := range []string{"Environment=" + unitMemLimit, "LimitNOFILE=" + strconv.Itoa(unitNoFile)} {
		if !strings.Contains(unit, "\n"+line+"\n") {
			t.Errorf("gatehouse-proxyd.service has no line %q: the attack does not run proxyd as the unit does", line)
		}
	}
}

package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gatehouse/shmem"
)

// TestMirrorBroken: status reads the page's mirror and says clearly when it is missing or
// invalid, and lists the invalid files apid moved aside.
func TestMirrorBroken(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "config-versions")
	state := func() (string, error) {
		_, err := shmem.ReadMirror(path)
		return genState(err), err
	}
	if s, err := state(); s != "missing" {
		t.Errorf("no file: state %q (%v); want missing", s, err)
	}
	if err := os.WriteFile(path, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := state()
	if s != "broken" {
		t.Errorf("7-byte file: state %q (%v); want broken", s, err)
	}
	p, b := testPrinter("text")
	r := statusReport{Generations: genStatus{Path: path, State: s, Error: err.Error(), MovedAside: []string{path + ".corrupt-1700000000"}}}
	if err := p.statusText(r); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"mirror:      BROKEN (apid writes it anew within 1 s while it runs, or at its start): reading config version mirror " + path + ": is 7 bytes, want 4096: wrong size\n",
		"moved aside: " + path + ".corrupt-1700000000\n",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("status text %q; want it to contain %q", b.String(), want)
		}
	}
	if strings.Contains(b.String(), "generations:") {
		t.Errorf("status text %q shows generations it could not read", b.String())
	}
	os.Remove(path)
	c, err := shmem.NewAfter(path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.KeepMirror(path, -1); err != nil {
		t.Fatal(err)
	}
	if s, err := state(); s != "ok" {
		t.Errorf("valid file: state %q (%v); want ok", s, err)
	}
}

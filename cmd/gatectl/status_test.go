package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gatehouse/shmem"
)

// TestGenerationsBroken: status reads the generation file and says clearly when it is missing
// or invalid, and lists the invalid files apid moved aside.
func TestGenerationsBroken(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "config-versions")
	state := func() (string, error) {
		_, err := readGenerations(path)
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
		"generations: BROKEN (apid makes a new file within 1 s while it runs, or at its start): opening config version cache " + path + ": is 7 bytes, want 4096: wrong size\n",
		"moved aside: " + path + ".corrupt-1700000000\n",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("status text %q; want it to contain %q", b.String(), want)
		}
	}
	os.Remove(path)
	c, err := shmem.Create(path, -1)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if s, err := state(); s != "ok" {
		t.Errorf("valid file: state %q (%v); want ok", s, err)
	}
}

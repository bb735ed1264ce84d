package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestChurn runs every kind briefly against real daemons (apid and 2 proxyd, the real gatectl)
// and checks no stale accept and every round noticed by every proxyd.
func TestChurn(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the daemons and builds gatectl")
	}
	rotations := 5
	if v := os.Getenv("CHURN_ROTATIONS"); v != "" { // more, when looking for a rare failure
		rotations, _ = strconv.Atoi(v)
	}
	rep, err := runChurn(testWriter{t}, churnOptions{rotations: rotations, removes: 2, disables: 2, logouts: 2, edits: 2})
	if err != nil {
		t.Fatal(err)
	}
	var md bytes.Buffer
	rep.markdown(&md)
	t.Logf("\n%s", md.String())
	want := []string{kindRotate, kindRemove, kindDisable, kindLogout, kindEdit}
	if len(rep.Kinds) != len(want) {
		t.Fatalf("runChurn() = %d kinds; want %d", len(rep.Kinds), len(want))
	}
	for i, k := range rep.Kinds {
		if k.Kind != want[i] {
			t.Errorf("kind %d = %q; want %q", i, k.Kind, want[i])
		}
		if k.StaleAccepts != 0 {
			t.Errorf("%s: %d stale accepts; want 0", k.Kind, k.StaleAccepts)
		}
		if k.Noticed != k.Rounds || k.Rounds == 0 {
			t.Errorf("%s: %d of %d rounds noticed by every proxyd", k.Kind, k.Noticed, k.Rounds)
		}
		if k.Accepted == 0 || k.Refused == 0 || k.Other != 0 {
			t.Errorf("%s: %d accepted, %d refused, %d other answers; want both kinds and no other", k.Kind, k.Accepted, k.Refused, k.Other)
		}
		if len(k.DaemonErrors) != 0 {
			t.Errorf("%s: the daemons logged errors: %q", k.Kind, k.DaemonErrors)
		}
		if !k.Met {
			t.Errorf("%s: target missed: %+v", k.Kind, k)
		}
		if !strings.Contains(md.String(), "| "+k.Kind+" |") {
			t.Errorf("markdown lacks the row %q", k.Kind)
		}
	}
	if _, err := json.Marshal(rep); err != nil {
		t.Error(err)
	}
}

// TestAnalyse checks the stale-accept and noticed arithmetic on made-up answers: two proxyds,
// credential 1 replaced by 2 at t=100.
func TestAnalyse(t *testing.T) {
	rot := []change{{at: 100, took: 40, accept: 2, refuse: []int32{1}}}
	base := []sample{
		{start: 10, end: 20, version: 1, status: 200, proxy: 0},
		{start: 90, end: 130, version: 1, status: 200, proxy: 1},  // started before the change
		{start: 110, end: 150, version: 2, status: 200, proxy: 0}, // p0 noticed at 150
		{start: 120, end: 170, version: 2, status: 200, proxy: 1}, // p1 at 170
		{start: 120, end: 125, version: 1, status: 401, proxy: 1},
	}
	for _, tt := range []struct {
		name    string
		changes []change
		extra   []sample
		stale   int
		noticed int
		delay   float64
	}{
		{"clean rotation", rot, nil, 0, 1, 70},
		{"old secret accepted after the return", rot, []sample{{start: 100, end: 101, version: 1, status: 200, proxy: 0}}, 1, 1, 70},
		{"one proxyd never accepts", rot, []sample{{start: 200, end: 210, version: 2, status: 401, proxy: 1}}, 0, 0, 0},
		{"disable window over", []change{{at: 100, accept: -1, refuse: []int32{1}, until: 300}},
			[]sample{{start: 101, end: 110, version: 1, status: 401, proxy: 0}, {start: 250, end: 310, version: 1, status: 200, proxy: 0}}, 0, 1, 25},
		{"edit: old accepted before noticed is no stale accept", []change{{at: 100, accept: 2, refuse: []int32{1}, edit: true}},
			[]sample{{start: 140, end: 145, version: 1, status: 200, proxy: 0}, {start: 155, end: 160, version: 1, status: 401, proxy: 0}}, 0, 1, 70},
		{"edit: old accepted after noticed", []change{{at: 100, accept: 2, refuse: []int32{1}, edit: true}},
			[]sample{{start: 155, end: 160, version: 1, status: 401, proxy: 0}, {start: 171, end: 180, version: 1, status: 200, proxy: 1}}, 1, 1, 70},
	} {
		t.Run(tt.name, func(t *testing.T) {
			samples := append(append([]sample(nil), base...), tt.extra...)
			if tt.noticed == 0 { // p1 refuses the new secret instead
				samples[3].status = 401
			}
			row := analyse("k", "", 0, 2, tt.changes, samples)
			if row.StaleAccepts != tt.stale || row.Noticed != tt.noticed || row.NoticedMax != tt.delay {
				t.Errorf("analyse = %d stale, %d noticed, max %v; want %d, %d, %v", row.StaleAccepts, row.Noticed, row.NoticedMax, tt.stale, tt.noticed, tt.delay)
			}
			if row.Met != (tt.stale == 0 && tt.noticed == 1) {
				t.Errorf("met = %v with %d stale, %d noticed", row.Met, tt.stale, tt.noticed)
			}
		})
	}
}

// TestEditShadow checks the editor-style write: same content but the one hash, a new inode,
// mode 0640, no temp file left.
func TestEditShadow(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "token.shadow")
	if err := os.WriteFile(path, []byte(`{"a@pbs!x": "$5$old", "b@pbs!y": "$5$keep"}`), 0o640); err != nil {
		t.Fatal(err)
	}
	before, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	clock := int64(0)
	start, end, err := editShadow(path, "a@pbs!x", "$5$new", func() int64 { clock++; return clock })
	if err != nil {
		t.Fatal(err)
	}
	if start != 1 || end != 2 {
		t.Errorf("editShadow times = %d, %d; want 1, 2", start, end)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]string
	if err := json.Unmarshal(raw, &m); err != nil || m["a@pbs!x"] != "$5$new" || m["b@pbs!y"] != "$5$keep" || len(m) != 2 {
		t.Errorf("after the edit the file is %s (%v)", raw, err)
	}
	after, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if os.SameFile(before, after) || after.Mode().Perm() != 0o640 {
		t.Errorf("after the edit: same file %v, mode %v; want a new file with 0640", os.SameFile(before, after), after.Mode())
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("dir holds %d entries after the edit; want 1", len(entries))
	}
}

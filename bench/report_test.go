package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const reportDoc = "# Title\n\nIntro.\n\n## Report\n\n" + beginMarker + "\nold figures\n" + endMarker + "\n\n## After\n\nTail.\n"

// TestRewriteSection checks that only the text between the markers changes, that rewriting
// twice gives the same bytes, and that missing, repeated or swapped markers are refused.
func TestRewriteSection(t *testing.T) {
	once, err := rewriteSection([]byte(reportDoc), "new figures\n| a | b |\n")
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Replace(reportDoc, "old figures\n", "new figures\n| a | b |\n", 1)
	if string(once) != want {
		t.Fatalf("rewritten:\n%s\nwant:\n%s", once, want)
	}
	twice, err := rewriteSection(once, "new figures\n| a | b |\n")
	if err != nil {
		t.Fatal(err)
	}
	if string(twice) != string(once) {
		t.Errorf("rewriting again changed the file:\n%s\nwas:\n%s", twice, once)
	}
	other, err := rewriteSection(once, "other")
	if err != nil {
		t.Fatal(err)
	}
	back, err := rewriteSection(other, "old figures")
	if err != nil {
		t.Fatal(err)
	}
	if string(back) != reportDoc {
		t.Errorf("rewriting back to the old body:\n%s\nwant the original:\n%s", back, reportDoc)
	}
	for _, tt := range []struct{ name, doc, want string }{
		{"no markers", "# Title\n", beginMarker},
		{"no end", "a\n" + beginMarker + "\nb\n", endMarker},
		{"no begin", "a\n" + endMarker + "\n", beginMarker},
		{"two begins", beginMarker + "\n" + beginMarker + "\n" + endMarker + "\n", "found it 2 times"},
		{"swapped", endMarker + "\nx\n" + beginMarker + "\n", "comes before"},
	} {
		if _, err := rewriteSection([]byte(tt.doc), "x"); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: rewriteSection = %v; want an error with %q", tt.name, err, tt.want)
		}
	}
}

// TestReplaceSection checks the file is rewritten in place with its mode kept, and left
// untouched when it has no markers.
func TestReplaceSection(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "README.md")
	if err := os.WriteFile(path, []byte(reportDoc), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := replaceSection(path, "figures"); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if want := strings.Replace(reportDoc, "old figures", "figures", 1); string(got) != want {
		t.Errorf("file:\n%s\nwant:\n%s", got, want)
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("after the rewrite: Stat = %v, %v; want mode 0600", st.Mode(), err)
	}
	if entries, err := os.ReadDir(dir); err != nil || len(entries) != 1 {
		t.Errorf("dir holds %v, %v; want README.md alone (no temp file left)", entries, err)
	}

	plain := filepath.Join(dir, "plain.md")
	if err := os.WriteFile(plain, []byte("# No markers\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	err = replaceSection(plain, "figures")
	if err == nil || !strings.Contains(err.Error(), plain) || !strings.Contains(err.Error(), beginMarker) {
		t.Errorf("replaceSection(no markers) = %v; want an error naming the file and the marker", err)
	}
	if err := checkReportFile(plain); err == nil {
		t.Error("checkReportFile(no markers) = nil; want an error")
	}
	if got, _ := os.ReadFile(plain); string(got) != "# No markers\n" {
		t.Errorf("a file without markers was changed: %q", got)
	}
}

package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
)

// printer writes one command's result in the chosen format.
type printer struct {
	format string // text, json, json-pretty
	w      io.Writer
	loc    *time.Location
}

func (a *app) printer() printer { return printer{format: a.format, w: a.stdout, loc: a.loc} }

func (p printer) text() bool { return p.format == "text" }

// json writes v (a value or raw JSON) on one line, or indented for json-pretty.
func (p printer) json(v any) error {
	raw, ok := v.(json.RawMessage)
	if !ok {
		var err error
		if raw, err = json.Marshal(v); err != nil {
			return fmt.Errorf("encoding output: %w", err)
		}
	}
	var buf bytes.Buffer
	var err error
	if p.format == "json-pretty" {
		err = json.Indent(&buf, raw, "", "  ")
	} else {
		err = json.Compact(&buf, raw)
	}
	if err != nil {
		return fmt.Errorf("encoding output: %w", err)
	}
	buf.WriteByte('\n')
	_, err = p.w.Write(buf.Bytes())
	return err
}

// table writes an aligned table: a header line, then one line per row. Cells are cleaned of
// control characters; an empty cell shows as "-".
func (p printer) table(header []string, rows [][]string) error {
	tw := tabwriter.NewWriter(p.w, 0, 0, 2, ' ', 0)
	line := func(cells []string) {
		for i, c := range cells {
			if i > 0 {
				io.WriteString(tw, "\t")
			}
			if c == "" {
				c = "-"
			}
			io.WriteString(tw, clean(c))
		}
		io.WriteString(tw, "\n")
	}
	line(header)
	for _, r := range rows {
		line(r)
	}
	return tw.Flush()
}

// field is one "key: value" line.
type field struct{ key, value string }

// fields writes "key: value" lines with the values aligned; empty values are left out.
func (p printer) fields(fs []field) error {
	width := 0
	for _, f := range fs {
		width = max(width, len(f.key))
	}
	var b strings.Builder
	for _, f := range fs {
		if f.value == "" {
			continue
		}
		fmt.Fprintf(&b, "%-*s %s\n", width+1, f.key+":", clean(f.value))
	}
	_, err := io.WriteString(p.w, b.String())
	return err
}

// clean makes s safe for one cell of a terminal table: control characters (tabs and newlines
// included, which would break the alignment, and ESC, which could drive the terminal) and
// invalid UTF-8 are shown as Go escapes. Users can set their own comment and names, so these
// strings are not trusted.
func clean(s string) string {
	ok := true
	for _, r := range s {
		if r == unicode.ReplacementChar || !unicode.IsPrint(r) && r != ' ' {
			ok = false
			break
		}
	}
	if ok {
		return s
	}
	q := strconv.QuoteToGraphic(s)
	return q[1 : len(q)-1]
}

// when formats a unix time; 0 is never.
func (p printer) when(unix int64) string {
	if unix == 0 {
		return "never"
	}
	return time.Unix(unix, 0).In(p.loc).Format("2006-01-02 15:04:05 MST")
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// parseExpire reads an --expire value: "never" or 0, a unix time, a date (2006-01-02, midnight
// at loc) or an RFC 3339 time.
func parseExpire(s string, loc *time.Location) (int64, error) {
	s = strings.TrimSpace(s)
	if s == "never" {
		return 0, nil
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if n < 0 {
			return 0, fmt.Errorf("--expire %q: a unix time cannot be negative", s)
		}
		return n, nil
	}
	t, err := time.ParseInLocation("2006-01-02", s, loc)
	if err != nil {
		t, err = time.Parse(time.RFC3339, s)
	}
	if err != nil {
		return 0, fmt.Errorf("--expire %q: want never, a unix time, a date (2006-01-02) or an RFC 3339 time", s)
	}
	if t.Unix() <= 0 {
		// A negative unix time is refused as the number is; 0 would mean never.
		return 0, fmt.Errorf("--expire %q: not after 1970-01-01 00:00:00 UTC (a unix time cannot be negative, and 0 means never)", s)
	}
	return t.Unix(), nil
}

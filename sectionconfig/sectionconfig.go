// Package sectionconfig reads and writes the Proxmox "section config" text format of PBS's
// user.cfg, domains.cfg, datastore.cfg and friends, keeping the order of sections, properties
// and comments so that a file read and written back is unchanged.
//
// # Format
//
// As written by proxmox-section-config (Rust, src/lib.rs: default_format_section_header,
// default_format_section_content, write_do) and read by it and by Proxmox's Perl
// PVE::SectionConfig (parse_config):
//
//	user: root@pam
//		comment Superuser
//		enable true
//
//	token: root@pam!backup
//		comment nightly job
//
// The rules:
//   - A section starts with a header line "<type>: <id>" at column 0. The type starts with a
//     letter (Rust: first char alphabetic) and is [A-Za-z][A-Za-z0-9_-]*; it ends at the first
//     ':'; the id is the rest of the line with surrounding white space removed. The id must not
//     be empty and must not contain white space (Perl: "^(\S+):\s*(\S+)\s*$"). Ids are unique
//     across the file, whatever their type (PBS keys sections by id alone).
//   - Property lines follow the header and start with white space (written as one tab):
//     "\t<key> <value>". The key runs up to the first white space; the value is the rest with
//     surrounding white space removed, so it may contain inner spaces. A line holding only a
//     key has the empty value, which is written as "\t<key> " (with the space: PBS's parser
//     requires it). Keys may repeat (array properties); meaning is left to the schema layer.
//   - A blank line (empty or only white space) ends a section; sections must be separated by
//     one, as in PBS, where a header right after a property line is a syntax error. The writer
//     puts exactly one blank line between sections and none at the end.
//   - A line whose first non-blank character is '#' is a comment (Perl skips them anywhere;
//     PBS's Rust parser rejects them, so a file with comments is Gatehouse-only). Comments are
//     kept: those before a header belong to that section (Section.Comments), those before a
//     property to that property (Prop.Comments), those after a section's last property (or at
//     the end of the file) to the section (Section.Trailing). Comments in a file with no
//     section at all are dropped. They are written back stripped of surrounding white space,
//     indented with a tab inside a section (Prop.Comments, Section.Trailing).
//   - Lines end with "\n"; a "\r" right before it is dropped (Rust str::lines). White space is
//     Unicode White_Space, as Rust's char::is_whitespace.
//
// # Limits and refusals
//
// A file larger than [MaxFileSize] (16 MiB) or with a line longer than [MaxLineLen] (64 KiB,
// without its line break) is refused, and so is one that is not UTF-8 or that contains a
// control character (U+0000-U+001F, U+007F-U+009F; Rust's char::is_control) other than a tab
// used as white space. Every parse error wraps [ErrSyntax] and names the 1-based line.
//
// [Encode] refuses, with an error wrapping [ErrSyntax], anything it could not write so that
// [Parse] reads back the same sections: a value, key, id or comment holding a control
// character (a "\n" or "\r" in a value would inject lines), a value with leading or trailing
// white space (it would be trimmed on reading), a key or id with white space, a type outside
// the syntax above, duplicate ids, lines or a file over the limits. Like PBS's writer, it never
// writes a partial file: it returns the whole text or an error.
package sectionconfig

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Limits.
const (
	MaxFileSize = 16 << 20 // bytes; larger files are refused
	MaxLineLen  = 64 << 10 // bytes in one line, without the line break
)

// ErrSyntax is wrapped by every error of Parse and Encode.
var ErrSyntax = errors.New("invalid section config")

// Prop is one property line.
type Prop struct {
	Key, Value string
	Comments   []string // comment lines right before this property, each starting with '#'
	Line       int      // 1-based line number it was read from; 0 if not read. Encode ignores it.
}

// Section is one section: header, properties in file order, and its comments.
type Section struct {
	Type, ID string
	Props    []Prop
	Comments []string // comment lines right before the header, each starting with '#'
	Trailing []string // comment lines after the last property
	Line     int      // 1-based line number of the header; 0 if not read. Encode ignores it.
}

// Get returns the value of the first property named key.
func (s *Section) Get(key string) (string, bool) {
	for i := range s.Props {
		if s.Props[i].Key == key {
			return s.Props[i].Value, true
		}
	}
	return "", false
}

// Set gives the first property named key the value, keeping its place and comments, or
// appends a new property when there is none.
func (s *Section) Set(key, value string) {
	for i := range s.Props {
		if s.Props[i].Key == key {
			s.Props[i].Value = value
			return
		}
	}
	s.Props = append(s.Props, Prop{Key: key, Value: value})
}

// Delete removes every property named key and reports whether there was one. Comments of a
// removed property move to the property after it (or to Trailing), so that none is lost.
func (s *Section) Delete(key string) bool {
	var carry []string
	kept := s.Props[:0]
	found := false
	for _, p := range s.Props {
		if p.Key == key {
			found = true
			carry = append(carry, p.Comments...)
			continue
		}
		if len(carry) > 0 {
			p.Comments = append(carry, p.Comments...)
			carry = nil
		}
		kept = append(kept, p)
	}
	clear(s.Props[len(kept):])
	s.Props = kept
	if len(carry) > 0 {
		s.Trailing = append(carry, s.Trailing...)
	}
	return found
}

// Clone returns a deep copy of s.
func (s *Section) Clone() Section {
	c := *s
	c.Comments = cloneStrings(s.Comments)
	c.Trailing = cloneStrings(s.Trailing)
	if s.Props != nil {
		c.Props = make([]Prop, len(s.Props))
		for i, p := range s.Props {
			p.Comments = cloneStrings(p.Comments)
			c.Props[i] = p
		}
	}
	return c
}

func cloneStrings(s []string) []string {
	if s == nil {
		return nil
	}
	return append([]string(nil), s...)
}

// Parse reads a section config file. Errors wrap ErrSyntax and name the line.
func Parse(data []byte) ([]Section, error) {
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("file is %d bytes, more than %d: %w", len(data), MaxFileSize, ErrSyntax)
	}
	var (
		secs    []Section
		cur     *Section // section being read; nil between sections
		pending []string // comments not yet attached
		seen    = map[string]int{}
	)
	for n := 1; len(data) > 0; n++ {
		var line []byte
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			line, data = data, nil
		}
		line = bytes.TrimSuffix(line, []byte{'\r'})
		if err := checkLine(line); err != nil {
			return nil, lineErr(n, "%v", err)
		}
		text := string(line)
		trimmed := strings.TrimFunc(text, unicode.IsSpace)
		switch {
		case trimmed == "":
			if cur != nil {
				cur.Trailing = append(cur.Trailing, pending...)
				pending, cur = nil, nil
			}
		case trimmed[0] == '#':
			pending = append(pending, trimmed)
		case startsWithSpace(text):
			if cur == nil {
				return nil, lineErr(n, "property line %q outside a section (a section starts with a line \"<type>: <id>\" at column 0)", clip(trimmed))
			}
			key, value := splitProp(trimmed)
			if err := checkText(value, "value of "+clip(key)); err != nil {
				return nil, lineErr(n, "%v", err)
			}
			cur.Props = append(cur.Props, Prop{Key: key, Value: value, Comments: pending, Line: n})
			pending = nil
		default:
			if cur != nil {
				return nil, lineErr(n, "found %q inside section %q; want an indented property line, or a blank line before the next section", clip(trimmed), cur.ID)
			}
			typ, id, err := parseHeader(text)
			if err != nil {
				return nil, lineErr(n, "%v", err)
			}
			if first, dup := seen[id]; dup {
				return nil, lineErr(n, "duplicate section id %q (first at line %d)", id, first)
			}
			seen[id] = n
			secs = append(secs, Section{Type: typ, ID: id, Comments: pending, Line: n})
			pending = nil
			cur = &secs[len(secs)-1]
		}
	}
	if len(pending) > 0 && len(secs) > 0 {
		last := &secs[len(secs)-1]
		last.Trailing = append(last.Trailing, pending...)
	}
	return secs, nil
}

func lineErr(n int, format string, args ...any) error {
	return fmt.Errorf("line %d: %s: %w", n, fmt.Sprintf(format, args...), ErrSyntax)
}

// checkLine enforces the line limits: length, UTF-8, no control characters but tab.
func checkLine(line []byte) error {
	if len(line) > MaxLineLen {
		return fmt.Errorf("line is %d bytes, more than %d", len(line), MaxLineLen)
	}
	for i := 0; i < len(line); {
		c := line[i]
		if c < utf8.RuneSelf {
			if (c < 0x20 && c != '\t') || c == 0x7f {
				return fmt.Errorf("control character %U at byte %d", rune(c), i+1)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRune(line[i:])
		if r == utf8.RuneError && size == 1 {
			return fmt.Errorf("invalid UTF-8 at byte %d", i+1)
		}
		if r >= 0x80 && r <= 0x9f {
			return fmt.Errorf("control character %U at byte %d", r, i+1)
		}
		i += size
	}
	return nil
}

func startsWithSpace(s string) bool {
	r, _ := utf8.DecodeRuneInString(s)
	return unicode.IsSpace(r)
}

// splitProp splits a trimmed property line into key and value (Rust:
// default_parse_section_content).
func splitProp(s string) (key, value string) {
	i := strings.IndexFunc(s, unicode.IsSpace)
	if i < 0 {
		return s, ""
	}
	return s[:i], strings.TrimFunc(s[i:], unicode.IsSpace)
}

// parseHeader parses "<type>: <id>" (Rust: default_parse_section_header; Perl:
// parse_section_header).
func parseHeader(line string) (typ, id string, err error) {
	typ, rest, ok := strings.Cut(line, ":")
	if !ok {
		return "", "", fmt.Errorf("%q is not a section header \"<type>: <id>\" (no ':')", clip(line))
	}
	typ = strings.TrimFunc(typ, unicode.IsSpace)
	if err := checkType(typ); err != nil {
		return "", "", err
	}
	id = strings.TrimFunc(rest, unicode.IsSpace)
	if err := checkID(id); err != nil {
		return "", "", fmt.Errorf("section %s: %v", typ, err)
	}
	return typ, id, nil
}

func checkType(typ string) error {
	if typ == "" {
		return errors.New("empty section type")
	}
	for i := 0; i < len(typ); i++ {
		c := typ[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
		if i > 0 {
			ok = ok || c >= '0' && c <= '9' || c == '_' || c == '-'
		}
		if !ok {
			return fmt.Errorf("section type %q has %q at byte %d (want a letter, then letters, digits, '_' or '-')", clip(typ), rune(c), i+1)
		}
	}
	return nil
}

func checkID(id string) error {
	if id == "" {
		return errors.New("missing section id")
	}
	if i := strings.IndexFunc(id, unicode.IsSpace); i >= 0 {
		return fmt.Errorf("section id %q contains white space", clip(id))
	}
	return checkText(id, "section id")
}

// checkText refuses text that Parse would not give back: invalid UTF-8 and control characters.
func checkText(s, what string) error {
	if !utf8.ValidString(s) {
		return fmt.Errorf("%s is not valid UTF-8", what)
	}
	for i, r := range s {
		if r < 0x20 || r >= 0x7f && r <= 0x9f {
			name := fmt.Sprintf("control character %U", r)
			switch r {
			case '\n', '\r':
				name = "a line break"
			case '\t':
				name = "a tab"
			}
			return fmt.Errorf("%s contains %s at byte %d", what, name, i+1)
		}
	}
	return nil
}

// Encode writes the sections in order, in the format PBS writes. See the package comment for
// what it refuses; errors wrap ErrSyntax and name the section and key.
func Encode(secs []Section) ([]byte, error) {
	var b bytes.Buffer
	seen := make(map[string]int, len(secs))
	for i := range secs {
		s := &secs[i]
		where := fmt.Sprintf("section %d (%q: %q)", i+1, clip(s.Type), clip(s.ID))
		if err := checkType(s.Type); err != nil {
			return nil, encErr(where, err)
		}
		if err := checkID(s.ID); err != nil {
			return nil, encErr(where, err)
		}
		if first, dup := seen[s.ID]; dup {
			return nil, encErr(where, fmt.Errorf("duplicate section id (also section %d)", first))
		}
		seen[s.ID] = i + 1
		if i > 0 {
			b.WriteByte('\n')
		}
		if err := writeComments(&b, "", s.Comments); err != nil {
			return nil, encErr(where, err)
		}
		if err := writeLine(&b, s.Type, ": ", s.ID); err != nil {
			return nil, encErr(where, err)
		}
		for j := range s.Props {
			p := &s.Props[j]
			if err := writeComments(&b, "\t", p.Comments); err != nil {
				return nil, encErr(where, fmt.Errorf("before key %q: %v", clip(p.Key), err))
			}
			if err := checkKey(p.Key); err != nil {
				return nil, encErr(where, err)
			}
			if err := checkValue(p.Value); err != nil {
				return nil, encErr(where, fmt.Errorf("key %s: %v", p.Key, err))
			}
			if err := writeLine(&b, "\t"+p.Key, " ", p.Value); err != nil {
				return nil, encErr(where, fmt.Errorf("key %s: %v", p.Key, err))
			}
		}
		if err := writeComments(&b, "\t", s.Trailing); err != nil {
			return nil, encErr(where, err)
		}
		if b.Len() > MaxFileSize {
			return nil, fmt.Errorf("encoding: more than %d bytes: %w", MaxFileSize, ErrSyntax)
		}
	}
	return b.Bytes(), nil
}

func encErr(where string, err error) error {
	return fmt.Errorf("encoding %s: %v: %w", where, err, ErrSyntax)
}

func writeLine(b *bytes.Buffer, a, sep, c string) error {
	if n := len(a) + len(sep) + len(c); n > MaxLineLen {
		return fmt.Errorf("line would be %d bytes, more than %d", n, MaxLineLen)
	}
	b.WriteString(a)
	b.WriteString(sep)
	b.WriteString(c)
	b.WriteByte('\n')
	return nil
}

// writeComments writes comment lines, each after indent.
func writeComments(b *bytes.Buffer, indent string, comments []string) error {
	for _, c := range comments {
		if !strings.HasPrefix(c, "#") {
			return fmt.Errorf("comment %q does not start with '#'", clip(c))
		}
		if err := checkText(strings.ReplaceAll(c, "\t", " "), "comment"); err != nil {
			return err
		}
		if strings.TrimFunc(c, unicode.IsSpace) != c {
			return fmt.Errorf("comment %q has trailing white space", clip(c))
		}
		if err := writeLine(b, indent, "", c); err != nil {
			return err
		}
	}
	return nil
}

// CheckProp reports whether Encode can write the property key with value: the key is
// non-empty, has no white space, does not start with '#'; neither has control characters or
// invalid UTF-8; the value has no leading or trailing white space; the line fits in
// MaxLineLen. The error does not wrap ErrSyntax; it names the key.
func CheckProp(key, value string) error {
	if err := checkKey(key); err != nil {
		return err
	}
	if err := checkValue(value); err != nil {
		return fmt.Errorf("%s: %v", key, err)
	}
	if n := 1 + len(key) + 1 + len(value); n > MaxLineLen {
		return fmt.Errorf("%s: value is %d bytes; the line would be %d bytes, more than %d", key, len(value), n, MaxLineLen)
	}
	return nil
}

func checkKey(key string) error {
	if key == "" {
		return errors.New("empty property key")
	}
	if key[0] == '#' {
		return fmt.Errorf("property key %q starts with '#' (it would read as a comment)", clip(key))
	}
	if strings.IndexFunc(key, unicode.IsSpace) >= 0 {
		return fmt.Errorf("property key %q contains white space", clip(key))
	}
	return checkText(key, "property key")
}

func checkValue(v string) error {
	if err := checkText(v, "value"); err != nil {
		return err
	}
	if strings.TrimFunc(v, unicode.IsSpace) != v {
		return fmt.Errorf("value %q has leading or trailing white space (it would be trimmed on reading)", clip(v))
	}
	return nil
}

// clip shortens long input in error messages.
func clip(s string) string {
	const max = 80
	if len(s) <= max {
		return s
	}
	i := max
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + "..."
}

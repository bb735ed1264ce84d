// Package acl reads and writes PBS's acl.cfg, the access control list, and answers the
// per-request question "is this user or token an administrator?" from a cached, immutable
// parse invalidated through the shared user generation counter (shmem.User covers users, ACL
// and realms; DESIGN.md).
//
// # File
//
// acl.cfg (/etc/gatehouse/acl.cfg, 0640 root:gatehouse, as user.cfg) holds one entry per line,
// as PBS writes it (pbs-config/src/acl.rs, AclTree::load and write_node_config):
//
//	acl:1:/:admin@pbs,ops@pbs!ci:Admin
//	acl:0:/datastore/store1:@backup:DatastoreReader,DatastoreBackup
//
// The five ':'-separated fields: "acl"; propagate, "0" or "1"; the path; a comma-separated list
// of user ids, token ids (authid) or "@group" names; a comma-separated list of role ids. Every
// user or group gets every role of its line. Lines are trimmed; empty lines are skipped; list
// items are trimmed (PBS does the same).
//
// Parse is strict and names the 1-based line: a wrong field count, another first field, a
// propagate flag other than 0/1, a path that is not "/" or "/<component>..." (components
// [A-Za-z0-9_][A-Za-z0-9._-]*, empty components dropped as PBS's split_acl_path does), an
// invalid user, token or group id, an empty or malformed role id, a '#' comment (PBS's
// parser cannot read one), a file over 16 MiB or a line over 64 KiB, invalid UTF-8. Errors wrap
// ErrSyntax. Unknown role ids are kept as they are (PBS refuses them; Gatehouse keeps a
// newer PBS's roles); the API accepts only PBS's role names (Roles).
//
// One user or group holds a role on a path once, with one propagate flag (the last line wins).
// As in PBS's insert_user_role, NoAccess replaces every other role of that user on that path
// and any other role replaces NoAccess.
//
// Encode writes canonically, as PBS: paths depth-first with children in byte order of their
// component; per path the propagate-0 lines, then the propagate-1 lines; users and groups
// with the same role set share a line (ids sorted, groups as "@name"), ordered by that list;
// roles sorted; root@pam's own entries are dropped (root@pam is always an administrator).
//
// # Administrators
//
// Config.Admin(id) reports whether id holds role Admin on "/" with propagate 1. A token is
// an administrator only through its own entry: its user's roles do not pass to it (PBS's
// privilege separation). root@pam is an administrator whatever the file says (the caller
// checks that). Admin does not allocate.
package acl

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	"gatehouse/authid"
)

// Limits and names.
const (
	MaxFileSize  = 16 << 20 // bytes
	MaxLineLen   = 64 << 10 // bytes, without the line break
	RoleAdmin    = "Admin"
	RoleNoAccess = "NoAccess"
	superuser    = "root@pam"
)

// Roles are PBS's role names (pbs-api-types/src/acl.rs, Role), the ones the API accepts.
var Roles = []string{
	"Admin", "Audit", "NoAccess",
	"DatastoreAdmin", "DatastoreReader", "DatastoreBackup", "DatastorePowerUser", "DatastoreAudit",
	"RemoteAudit", "RemoteAdmin", "RemoteSyncOperator", "RemoteSyncPushOperator",
	"RemoteDatastorePowerUser", "RemoteDatastoreAdmin",
	"TapeAudit", "TapeAdmin", "TapeOperator", "TapeReader",
}

// ErrSyntax is wrapped by every parse error.
var ErrSyntax = errors.New("acl syntax error")

// Entry is one (path, user or group, role) of the list.
type Entry struct {
	Path      string // "/" or "/a/b"
	UGID      string // user or token id, or group name (without '@')
	Group     bool
	Role      string
	Propagate bool
}

// Config is a parsed acl.cfg. The zero value is an empty list; Parse(nil) returns one too.
type Config struct {
	// nodes maps a canonical path to its holders: "@group" or an authid, then role to propagate.
	nodes map[string]map[string]map[string]bool
}

// Parse parses acl.cfg. Errors wrap ErrSyntax and name the line.
func Parse(data []byte) (*Config, error) {
	c := &Config{}
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("%w: file of %d bytes is over the %d byte limit", ErrSyntax, len(data), MaxFileSize)
	}
	for n := 1; len(data) > 0; n++ {
		line := data
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			data = nil
		}
		if err := c.parseLine(line); err != nil {
			return nil, fmt.Errorf("%w: line %d: %w", ErrSyntax, n, err)
		}
	}
	return c, nil
}

func (c *Config) parseLine(raw []byte) error {
	if len(raw) > MaxLineLen {
		return fmt.Errorf("line of %d bytes is over the %d byte limit", len(raw), MaxLineLen)
	}
	if !utf8.Valid(raw) {
		return errors.New("not UTF-8")
	}
	line := strings.TrimSpace(string(raw))
	if line == "" {
		return nil
	}
	if strings.HasPrefix(line, "#") {
		return errors.New("comments are not allowed (PBS cannot read them)")
	}
	f := strings.Split(line, ":")
	if len(f) != 5 {
		return fmt.Errorf("%d ':'-separated fields; want 5 (acl:<propagate>:<path>:<users>:<roles>)", len(f))
	}
	if f[0] != "acl" {
		return fmt.Errorf("starts with %q; want \"acl\"", clip(f[0]))
	}
	var propagate bool
	switch f[1] {
	case "0":
	case "1":
		propagate = true
	default:
		return fmt.Errorf("propagate flag %q; want 0 or 1", clip(f[1]))
	}
	path, err := CleanPath(f[2])
	if err != nil {
		return err
	}
	ugs := strings.Split(f[3], ",")
	roles := strings.Split(f[4], ",")
	for i, ug := range ugs {
		ug = strings.TrimSpace(ug)
		if err := checkHolder(ug); err != nil {
			return err
		}
		ugs[i] = ug
	}
	for i, r := range roles {
		r = strings.TrimSpace(r)
		if err := checkRole(r); err != nil {
			return err
		}
		roles[i] = r
	}
	for _, ug := range ugs {
		for _, r := range roles {
			c.insert(path, ug, r, propagate)
		}
	}
	return nil
}

// CleanPath checks an ACL path and returns it canonical: "/" or "/a/b", empty components
// dropped.
func CleanPath(p string) (string, error) {
	if !strings.HasPrefix(p, "/") {
		return "", fmt.Errorf("path %q does not start with '/'", clip(p))
	}
	var parts []string
	for comp := range strings.SplitSeq(p, "/") {
		if comp == "" {
			continue
		}
		if !safeID(comp) {
			return "", fmt.Errorf("path %q: component %q is not [A-Za-z0-9_][A-Za-z0-9._-]*", clip(p), clip(comp))
		}
		parts = append(parts, comp)
	}
	return "/" + strings.Join(parts, "/"), nil
}

// checkHolder checks a user id, token id or "@group".
func checkHolder(ug string) error {
	if g, ok := strings.CutPrefix(ug, "@"); ok {
		if !safeID(g) || len(g) > 64 {
			return fmt.Errorf("group %q is not [A-Za-z0-9_][A-Za-z0-9._-]* of at most 64 characters", clip(g))
		}
		return nil
	}
	a, err := authid.Parse(ug)
	if err != nil {
		return fmt.Errorf("user or token %q: %w", clip(ug), err)
	}
	if a.String() != ug {
		return fmt.Errorf("user or token %q is not written canonically", clip(ug))
	}
	return nil
}

// checkRole checks a role id's syntax (known or not).
func checkRole(r string) error {
	if r == "" || len(r) > 64 {
		return fmt.Errorf("role %q: want 1 to 64 characters", clip(r))
	}
	for i := 0; i < len(r); i++ {
		b := r[i]
		if !(b >= 'A' && b <= 'Z' || b >= 'a' && b <= 'z' || i > 0 && (b >= '0' && b <= '9' || b == '_' || b == '-' || b == '.')) {
			return fmt.Errorf("role %q is not [A-Za-z][A-Za-z0-9._-]*", clip(r))
		}
	}
	return nil
}

// KnownRole reports whether r is one of PBS's role names.
func KnownRole(r string) bool { return slices.Contains(Roles, r) }

func safeID(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		b := s[i]
		ok := b >= 'A' && b <= 'Z' || b >= 'a' && b <= 'z' || b >= '0' && b <= '9' || b == '_' || i > 0 && (b == '.' || b == '-')
		if !ok {
			return false
		}
	}
	return true
}

func clip(s string) string {
	if len(s) > 64 {
		s = s[:64] + "..."
	}
	return strings.ToValidUTF8(s, "?")
}

// insert gives holder role on path, as PBS's insert_user_role: NoAccess replaces every role,
// any other role replaces NoAccess.
func (c *Config) insert(path, holder, role string, propagate bool) {
	if c.nodes == nil {
		c.nodes = map[string]map[string]map[string]bool{}
	}
	n := c.nodes[path]
	if n == nil {
		n = map[string]map[string]bool{}
		c.nodes[path] = n
	}
	m := n[holder]
	if m == nil || role == RoleNoAccess {
		m = map[string]bool{}
		n[holder] = m
	} else {
		delete(m, RoleNoAccess)
	}
	m[role] = propagate
}

func holderOf(ugid string, group bool) string {
	if group {
		return "@" + ugid
	}
	return ugid
}

// Set gives ugid (a group when group is set) role on path (canonical, see CleanPath) with the
// propagate flag, replacing an existing flag. The caller checks the ids.
func (c *Config) Set(path, ugid string, group bool, role string, propagate bool) {
	c.insert(path, holderOf(ugid, group), role, propagate)
}

// Delete removes role of ugid on path and reports whether it was there.
func (c *Config) Delete(path, ugid string, group bool, role string) bool {
	h := holderOf(ugid, group)
	m := c.nodes[path][h]
	if _, ok := m[role]; !ok {
		return false
	}
	delete(m, role)
	if len(m) == 0 {
		delete(c.nodes[path], h)
		if len(c.nodes[path]) == 0 {
			delete(c.nodes, path)
		}
	}
	return true
}

// RemoveUser removes every entry of userid and of its tokens, and reports whether there was one.
func (c *Config) RemoveUser(userid string) bool {
	return c.remove(func(h string) bool { return h == userid || strings.HasPrefix(h, userid+"!") })
}

// RemoveAuthid removes every entry of exactly id (a user or a token), and reports whether there
// was one.
func (c *Config) RemoveAuthid(id string) bool {
	return c.remove(func(h string) bool { return h == id })
}

func (c *Config) remove(match func(string) bool) bool {
	found := false
	for path, n := range c.nodes {
		for h := range n {
			if match(h) {
				delete(n, h)
				found = true
			}
		}
		if len(n) == 0 {
			delete(c.nodes, path)
		}
	}
	return found
}

// Admin reports whether id (a user or token id, exactly as written) holds Admin on "/" with
// propagate 1. It does not allocate.
func (c *Config) Admin(id string) bool {
	if c == nil || id == "" || id[0] == '@' {
		return false // groups are stored as "@name"; no user or token id starts with '@'
	}
	return c.nodes["/"][id][RoleAdmin]
}

// Entries returns every entry in the order Encode writes paths, then by holder and role.
func (c *Config) Entries() []Entry {
	var out []Entry
	for _, path := range c.paths() {
		n := c.nodes[path]
		for _, h := range sortedKeys(n) {
			for _, r := range sortedKeys(n[h]) {
				g, group := strings.CutPrefix(h, "@")
				out = append(out, Entry{Path: path, UGID: g, Group: group, Role: r, Propagate: n[h][r]})
			}
		}
	}
	return out
}

// paths returns the paths depth-first, children in byte order of their component.
func (c *Config) paths() []string {
	ps := sortedKeys(c.nodes)
	slices.SortFunc(ps, func(a, b string) int {
		return slices.Compare(strings.Split(a, "/"), strings.Split(b, "/"))
	})
	return ps
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// Encode returns the canonical text (see the package comment).
func (c *Config) Encode() []byte {
	var b bytes.Buffer
	for _, path := range c.paths() {
		n := c.nodes[path]
		for _, prop := range []bool{false, true} {
			// role -> sorted holders, then holder list -> roles.
			byRole := map[string][]string{}
			for _, h := range sortedKeys(n) {
				if h == superuser {
					continue
				}
				for r, p := range n[h] {
					if p == prop {
						byRole[r] = append(byRole[r], h)
					}
				}
			}
			byList := map[string][]string{}
			for r, hs := range byRole {
				l := strings.Join(hs, ",")
				byList[l] = append(byList[l], r)
			}
			flag := "0"
			if prop {
				flag = "1"
			}
			for _, l := range sortedKeys(byList) {
				roles := byList[l]
				slices.Sort(roles)
				fmt.Fprintf(&b, "acl:%s:%s:%s:%s\n", flag, path, l, strings.Join(roles, ","))
			}
		}
	}
	return b.Bytes()
}

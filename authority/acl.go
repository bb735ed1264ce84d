package authority

import (
	"errors"
	"net/http"

	"gatehouse/acl"
	"gatehouse/authid"
	"gatehouse/params"
	"gatehouse/reply"
)

// aclJSON is one ACL entry as PBS's API lists it (AclListItem).
type aclJSON struct {
	Path      string `json:"path"`
	UGID      string `json:"ugid"`
	UGIDType  string `json:"ugid_type"` // "user" (users and tokens) or "group"
	RoleID    string `json:"roleid"`
	Propagate bool   `json:"propagate"`
}

// readACL is GET /access/acl: the entries on path and below (only on path with exact=1), or
// all of them; administrators only.
func (s *Server) readACL(w http.ResponseWriter, r *http.Request, c who) {
	if !c.superuser() {
		reply.Error(w, http.StatusForbidden, "permission check failed")
		return
	}
	p, err := readParams(w, r, "path", "exact")
	if err != nil {
		reply.Invalid(w, err)
		return
	}
	exact, err := params.Bool(p, "exact")
	if err != nil {
		reply.Invalid(w, err)
		return
	}
	path := ""
	if v, ok := p["path"]; ok {
		if path, err = acl.CleanPath(v); err != nil {
			reply.Invalid(w, params.Error{"path": err.Error()})
			return
		}
	}
	cfg, err := s.o.ACL.Config()
	if err != nil {
		s.internal(w, err, "reading acl")
		return
	}
	out := []aclJSON{}
	for _, e := range cfg.Entries() {
		if path != "" && !(e.Path == path || !exact && under(e.Path, path)) {
			continue
		}
		j := aclJSON{Path: e.Path, UGID: e.UGID, UGIDType: "user", RoleID: e.Role, Propagate: e.Propagate}
		if e.Group {
			j.UGIDType = "group"
		}
		out = append(out, j)
	}
	reply.Data(w, out)
}

// under reports whether path lies below parent (both canonical).
func under(path, parent string) bool {
	if parent == "/" {
		return true
	}
	return len(path) > len(parent) && path[:len(parent)] == parent && path[len(parent)] == '/'
}

var errNoSuch = errors.New("no such user or API token")

// updateACL is PUT /access/acl (PBS's update_acl): gives auth-id role on path (propagate,
// default 1) or, with delete=1, takes it away; administrators only. The auth-id must exist
// unless deleting; as in PBS, group entries cannot be changed through the API yet.
func (s *Server) updateACL(w http.ResponseWriter, r *http.Request, c who) {
	if !c.adminUser() {
		reply.Error(w, http.StatusForbidden, "permission check failed")
		return
	}
	p, err := readParams(w, r, "path", "role", "auth-id", "group", "propagate", "delete")
	if err != nil {
		reply.Invalid(w, err)
		return
	}
	bad := params.Error{}
	propagate := true
	if _, ok := p["propagate"]; ok {
		if propagate, err = params.Bool(p, "propagate"); err != nil {
			bad["propagate"] = "not a boolean"
		}
	}
	del, err := params.Bool(p, "delete")
	if err != nil {
		bad["delete"] = "not a boolean"
	}
	role := p["role"]
	if !acl.KnownRole(role) {
		bad["role"] = "unknown role"
	}
	path, err := acl.CleanPath(p["path"])
	if err != nil {
		bad["path"] = err.Error()
	}
	var id authid.Authid
	switch {
	case p["group"] != "":
		bad["group"] = "groups are currently not supported"
	case p["auth-id"] == "":
		bad["auth-id"] = "missing 'auth-id' or 'group' parameter"
	default:
		if id, err = authid.Parse(p["auth-id"]); err != nil {
			bad["auth-id"] = "invalid user or token id"
		}
	}
	if len(bad) > 0 {
		reply.Invalid(w, bad)
		return
	}
	// The user or token must exist unless deleting (PBS too). Checked under the ACL lock, and
	// deleting a user removes its entries under that lock after user.cfg no longer has it, so
	// an entry is never added for a user being deleted.
	err = s.o.ACL.Update(func(a *acl.Config) error {
		if del {
			a.Delete(path, id.String(), false, role)
			return nil
		}
		cfg, err := s.o.Users.Config()
		if err != nil {
			return err
		}
		_, user := cfg.User(id.String())
		_, token := cfg.Token(id.String())
		if id.IsToken() && !token || !id.IsToken() && !user {
			return errNoSuch
		}
		a.Set(path, id.String(), false, role, propagate)
		return nil
	})
	if errors.Is(err, errNoSuch) {
		reply.Error(w, http.StatusBadRequest, errNoSuch.Error()+" "+id.String())
		return
	}
	if err != nil {
		s.internal(w, err, "updating acl")
		return
	}
	s.o.Log.Info("acl changed", "path", path, "auth_id", id.String(), "role", role, "propagate", propagate, "delete", del, "by", c.authid.String())
	reply.Data(w, nil)
}

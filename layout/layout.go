// Package layout names the files Gatehouse keeps, under the two directories every daemon and
// gatectl take (--config-dir, --run-dir), with their owners and modes (DESIGN.md, Files).
//
//	config dir (/etc/gatehouse, 0755 root)
//	  user.cfg acl.cfg token.shadow authkey.pub authkey.retired csrf.key proxy.key
//	  revocations.json                                                         0640 root:gatehouse
//	  proxy.pem                                                                0644 root
//	  authkey.key shadow.json tfa.json                                         0600 root
//	run dir (/run/gatehouse, 0755 root)
//	  shmem.sock              0660 root:gatehouse (apid hands out its page of generation counters)
//	  shmem/config-versions   0640 root:gatehouse (the page's mirror, written by apid, mapped by nobody)
//	  apid.sock               0660 root:gatehouse
//	  tfa/<userid>.json       0600 root (pending WebAuthn challenges, failure counts; dir 0700)
//	  lock files (.*.lck)     0600 root (Lock("acl") for acl.cfg)
//
// proxyd (user gatehouse) reads the 0640 files and cannot open the 0600 ones; a test checks it.
package layout

import "path/filepath"

// Defaults for the two directories.
const (
	DefaultConfigDir = "/etc/gatehouse"
	DefaultRunDir    = "/run/gatehouse"
)

// Dirs are the two directories.
type Dirs struct {
	Config, Run string
}

func (d Dirs) c(name string) string { return filepath.Join(d.Config, name) }
func (d Dirs) r(name string) string { return filepath.Join(d.Run, name) }

// Config-directory files.
func (d Dirs) UserCfg() string     { return d.c("user.cfg") }
func (d Dirs) AclCfg() string      { return d.c("acl.cfg") }
func (d Dirs) TokenShadow() string { return d.c("token.shadow") }
func (d Dirs) Shadow() string      { return d.c("shadow.json") }
func (d Dirs) TFA() string         { return d.c("tfa.json") }
func (d Dirs) AuthKey() string     { return d.c("authkey.key") }
func (d Dirs) AuthPub() string     { return d.c("authkey.pub") }
func (d Dirs) AuthRetired() string { return d.c("authkey.retired") }
func (d Dirs) CSRFKey() string     { return d.c("csrf.key") }
func (d Dirs) ProxyKey() string    { return d.c("proxy.key") }
func (d Dirs) ProxyCert() string   { return d.c("proxy.pem") }
func (d Dirs) Revocations() string { return d.c("revocations.json") }

// Run-directory files.
func (d Dirs) ShmemDir() string        { return d.r("shmem") }
func (d Dirs) Generations() string     { return d.r("shmem/config-versions") } // the mirror
func (d Dirs) ShmemSocket() string     { return d.r("shmem.sock") }
func (d Dirs) Socket() string          { return d.r("apid.sock") }
func (d Dirs) Lock(name string) string { return d.r("." + name + ".lck") }
func (d Dirs) TFAState() string        { return d.r("tfa") }

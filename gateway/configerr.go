package gateway

// A config file that proxyd cannot use (token.shadow, user.cfg or revocations.json: unreadable,
// unparsable, unsafe permissions) fails every request whose credential needs it with 500. Issue
// 18 saw a corrupt token.shadow write one ERROR line per request (66 451 lines in 3 s). So a
// broken file is logged once per version of the file (its identity: device, inode, size,
// mtime, ctime, as the caches use them): once when it breaks, and again only after it has
// changed, e.g. fixed and broken anew, or still broken after an edit. Every request that hits
// it is counted in gatehouse_config_errors_total{file}.

import (
	"errors"
	"log/slog"
	"net/http"
	"sync"

	"gatehouse/credential"
	"gatehouse/lockfile"
	"gatehouse/reply"
)

// configFile is the file label of gatehouse_config_errors_total.
type configFile uint8

const (
	fileTokenShadow configFile = iota
	fileUserCfg
	fileRevocations
	numConfigFiles
)

func (f configFile) String() string {
	switch f {
	case fileTokenShadow:
		return credential.FileTokenShadow
	case fileUserCfg:
		return credential.FileUserCfg
	}
	return credential.FileRevocations
}

func configFileOf(name string) configFile {
	switch name {
	case credential.FileTokenShadow:
		return fileTokenShadow
	case credential.FileUserCfg:
		return fileUserCfg
	}
	return fileRevocations
}

// configErrors remembers, per file, the version last logged as broken.
type configErrors struct {
	log    *slog.Logger
	mu     sync.Mutex
	logged [numConfigFiles]struct {
		ok  bool // a version was logged
		fid lockfile.FileID
	}
}

// report counts a request that hit fe and logs fe unless this version of the file was logged
// already. It reports whether it logged.
func (c *configErrors) report(fe *credential.FileError, m *Metrics) bool {
	f := configFileOf(fe.File)
	m.configError(f)
	// The version that failed: the one the store read (a cached refusal may outlive it by a
	// poll), else what is there now.
	var fid lockfile.FileID
	var err error
	if ve := (*lockfile.VersionError)(nil); errors.As(fe.Err, &ve) {
		fid = ve.ID
	} else {
		fid, err = lockfile.Stat(fe.Path) // the zero FileID for a missing file
	}
	c.mu.Lock()
	l := &c.logged[f]
	seen := err == nil && l.ok && l.fid == fid
	l.ok, l.fid = err == nil, fid
	c.mu.Unlock()
	if !seen {
		c.log.Error("config file broken: requests that need it fail until it is fixed", "file", fe.File, "path", fe.Path, "err", fe.Err.Error())
	}
	return !seen
}

// serverError answers 500 for an error of proxyd's own while checking a credential: a broken
// config file is counted and logged once per version (configErrors); anything else is logged.
func (s *Server) serverError(w http.ResponseWriter, doing string, err error) {
	var fe *credential.FileError
	if errors.As(err, &fe) {
		s.configErrs.report(fe, s.o.Metrics)
	} else {
		s.o.Log.Error(doing, "err", err)
	}
	reply.Error(w, http.StatusInternalServerError, "internal error")
}

package authority

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"time"

	"gatehouse/acl"
	"gatehouse/layout"
	"gatehouse/lifecycle"
	"gatehouse/lockfile"
	"gatehouse/peercred"
	"gatehouse/realm"
	"gatehouse/revocation"
	"gatehouse/shmem"
	"gatehouse/tfa"
	"gatehouse/ticket"
	"gatehouse/tlscert"
	"gatehouse/tokenshadow"
	"gatehouse/users"
)

// DaemonUser is the account proxyd runs as; apid admits its uid and gives files its group.
const DaemonUser = "gatehouse"

// Main runs apid with command-line args until ctx is done. It creates what a first start
// needs: the directories, the generation file, the signing and CSRF keys, proxyd's TLS
// certificate and user.cfg with root@pam, and it removes the temp files of the key files that
// an apid killed mid-write left (the stores remove those of the other files at their next
// write). It owns the page of generation counters (openPage), serves it on
// <run-dir>/shmem.sock and keeps its mirror (Cache.Watch). It logs "listening" once the
// sockets accept.
// SIGHUP calls Server.Reload (package lifecycle: sd_notify, drain). --lock-timeout (default
// 10 s) bounds every config write's wait for its file's lock; a write that runs out answers 503
// naming the lock.
func Main(ctx context.Context, args []string, stderr io.Writer) error {
	fl := flag.NewFlagSet("apid", flag.ContinueOnError)
	fl.SetOutput(stderr)
	var d layout.Dirs
	fl.StringVar(&d.Config, "config-dir", layout.DefaultConfigDir, "configuration directory")
	fl.StringVar(&d.Run, "run-dir", layout.DefaultRunDir, "runtime directory (socket, generation file, locks)")
	proxyUser := fl.String("proxy-user", DaemonUser, "user (name or uid) proxyd runs as: admitted on the socket, group of the files it reads")
	prefix := fl.String("prefix", "PBS", "ticket product prefix")
	pamService := fl.String("pam-service", realm.DefaultPAMService, "PAM service of the pam realm")
	lockTimeout := fl.Duration("lock-timeout", lockfile.DefaultTimeout, "how long a config write waits for its file's lock before failing with a timeout (503)")
	if err := fl.Parse(args); err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	uid, gid, err := lookupUser(*proxyUser)
	if err != nil {
		return err
	}
	if *lockTimeout <= 0 {
		return fmt.Errorf("--lock-timeout %v: must be positive", *lockTimeout)
	}
	s, gen, err := setUp(d, gid, *prefix, *pamService, *lockTimeout, log)
	if err != nil {
		return err
	}
	defer gen.Close()
	allowed := []uint32{uint32(os.Getuid())}
	if uid >= 0 {
		allowed = append(allowed, uint32(uid))
	}
	popt := peercred.Options{GID: gid, Allowed: allowed, Refused: func(c peercred.Cred, err error) {
		log.Warn("refused connection", "uid", c.UID, "pid", c.PID, "err", err)
	}}
	// The page of generation counters, for proxyd (read-only) and for root or apid's own user
	// (gatectl, read-write), before apid.sock: a proxyd that finds apid listening finds it.
	pln, err := peercred.Listen(d.ShmemSocket(), popt)
	if err != nil {
		return err
	}
	defer pln.Close()
	go gen.Serve(pln, func(c net.Conn) bool {
		pc, ok := c.(*peercred.Conn)
		return ok && (pc.Cred.UID == 0 || pc.Cred.UID == uint32(os.Getuid()))
	})
	ln, err := peercred.Listen(d.Socket(), popt)
	if err != nil {
		return err
	}
	// Manual edits of acl.cfg bump no generation: noticed within 250 ms.
	wctx, cancelWatch := context.WithCancel(ctx)
	defer cancelWatch()
	go s.o.ACL.Watch(wctx, acl.WatchInterval, func(err error) { log.Warn("watching acl config", "err", err) })
	// The page's mirror kept, counters moved by another process reported (package shmem).
	go gen.Watch(wctx, shmem.WatchOptions{Report: func(e shmem.Event) { e.Log(log) }})
	srv := &http.Server{Handler: s, ConnContext: peercred.ConnContext, ReadHeaderTimeout: 10 * time.Second}
	log.Info("listening", "addr", d.Socket(), "proxy_uid", uid)
	// Serve returns only once the handlers have drained (or after 5 s), so that the deferred
	// closes (the shared-memory mapping above all) never pull memory from under a request.
	return lifecycle.Serve(ctx, srv, ln, lifecycle.Options{Reload: s.Reload, Log: log})
}

// lookupUser resolves proxyd's account; a missing default account means "same uid as apid"
// (demo mode), reported as uid -1.
func lookupUser(name string) (uid, gid int, err error) {
	if n, err := strconv.Atoi(name); err == nil {
		u, err := user.LookupId(name)
		if err != nil {
			return n, n, nil // a bare uid without an account: its group id is taken to be equal
		}
		g, _ := strconv.Atoi(u.Gid)
		return n, g, nil
	}
	u, err := user.Lookup(name)
	if err != nil {
		if name == DaemonUser {
			return -1, -1, nil
		}
		return 0, 0, fmt.Errorf("looking up proxyd's user %s: %w", name, err)
	}
	uid, _ = strconv.Atoi(u.Uid)
	gid, _ = strconv.Atoi(u.Gid)
	return uid, gid, nil
}

// openPage returns apid's page of generation counters (package shmem): the one the service
// manager kept across apid's restart, or a new one starting above the mirror's values, which it
// hands to the service manager's store; and it keeps the page's mirror in the run directory.
func openPage(d layout.Dirs, gid int, log *slog.Logger) (*shmem.Cache, error) {
	var gen *shmem.Cache
	if f := lifecycle.Stored(shmem.StoreName); f != nil {
		g, err := shmem.Adopt(f)
		if err != nil {
			f.Close()
			log.Warn("not using the config version page the service manager kept: making a new one", "err", err)
		} else {
			gen = g
			log.Info("using the config version page the service manager kept")
		}
	}
	if gen == nil {
		g, err := shmem.NewAfter(d.Generations())
		if err != nil {
			return nil, err
		}
		gen = g
		if stored, err := lifecycle.Store(gen.StoreFile(), shmem.StoreName); err != nil {
			log.Warn("the service manager does not keep the config version page: a restart makes a new one", "err", err)
		} else if stored {
			log.Info("the service manager keeps the config version page across restarts")
		}
	}
	movedTo, err := gen.KeepMirror(d.Generations(), gid)
	if movedTo != "" {
		log.Warn("moved an invalid config version mirror aside", "path", d.Generations(), "to", movedTo)
	}
	if err != nil {
		gen.Close()
		return nil, err
	}
	return gen, nil
}

// setUp makes the directories and first-start files and opens every store.
func setUp(d layout.Dirs, gid int, prefix, pamService string, lockTimeout time.Duration, log *slog.Logger) (*Server, *shmem.Cache, error) {
	for _, dir := range []string{d.Config, d.Run, d.ShmemDir()} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, nil, fmt.Errorf("making directory %s: %w", dir, err)
		}
	}
	gen, err := openPage(d, gid, log)
	if err != nil {
		return nil, nil, err
	}
	fail := func(err error) (*Server, *shmem.Cache, error) {
		gen.Close()
		return nil, nil, err
	}
	// apid alone writes the key files, holding no lock: a temp file of theirs that an apid killed
	// mid-replace left (a private key among them) is removed here, before anything writes them.
	for _, f := range []string{d.AuthKey(), d.AuthPub(), d.AuthRetired(), d.CSRFKey(), d.ProxyKey(), d.ProxyCert()} {
		if err := lockfile.CleanTemps(filepath.Dir(f), filepath.Base(f)); err != nil {
			return fail(err)
		}
	}
	if _, err := os.Stat(d.AuthKey()); errors.Is(err, fs.ErrNotExist) {
		if err := ticket.GenerateKeys(d.AuthKey(), d.AuthPub(), gid); err != nil {
			return fail(err)
		}
		gen.Bump(shmem.Keys)
		log.Info("made ticket signing key", "path", d.AuthKey())
	}
	if _, err := os.Stat(d.CSRFKey()); errors.Is(err, fs.ErrNotExist) {
		if err := ticket.GenerateCSRFKey(d.CSRFKey(), gid); err != nil {
			return fail(err)
		}
		gen.Bump(shmem.Keys)
	}
	if made, err := tlscert.Ensure(d.ProxyKey(), d.ProxyCert(), gid, time.Now()); err != nil {
		return fail(err)
	} else if made {
		log.Info("made self-signed TLS certificate", "path", d.ProxyCert())
	}
	if repaired, err := ticket.EnsurePublic(d.AuthKey(), d.AuthPub(), gid); err != nil {
		return fail(err)
	} else if repaired {
		gen.Bump(shmem.Keys)
		log.Warn("rewrote the public key to match the signing key", "path", d.AuthPub())
	}
	signer, err := ticket.LoadSignerRing(d.AuthKey(), d.AuthRetired(), time.Now())
	if err != nil {
		return fail(err)
	}
	csrf, err := ticket.LoadCSRFKey(d.CSRFKey())
	if err != nil {
		return fail(err)
	}
	us, err := users.Open(users.Options{Path: d.UserCfg(), LockPath: d.Lock("user.cfg"), Generations: gen, GID: gid, LockTimeout: lockTimeout})
	if err != nil {
		return fail(err)
	}
	if err := us.Bootstrap(); err != nil {
		return fail(err)
	}
	tokens, err := tokenshadow.Open(tokenshadow.Options{Path: d.TokenShadow(), LockPath: d.Lock("token.shadow"), Generations: gen, GID: gid, LockTimeout: lockTimeout})
	if err != nil {
		return fail(err)
	}
	pw, err := realm.OpenPasswords(realm.PasswordOptions{Path: d.Shadow(), LockPath: d.Lock("shadow.json"), LockTimeout: lockTimeout})
	if err != nil {
		return fail(err)
	}
	rev, err := revocation.Open(revocation.Options{Path: d.Revocations(), LockPath: d.Lock("revocations"), Generations: gen, GID: gid, LockTimeout: lockTimeout})
	if err != nil {
		return fail(err)
	}
	ac, err := acl.Open(acl.Options{Path: d.AclCfg(), LockPath: d.Lock("acl"), Generations: gen, GID: gid, LockTimeout: lockTimeout})
	if err != nil {
		return fail(err)
	}
	tf, err := tfa.Open(tfa.Options{Path: d.TFA(), StateDir: d.TFAState(), LockPath: d.Lock("tfa"), Generations: gen, Log: log, LockTimeout: lockTimeout})
	if err != nil {
		return fail(err)
	}
	s, err := New(Options{
		Prefix: prefix, Signer: signer, CSRF: csrf, Users: us, Tokens: tokens, Generations: gen,
		KeyFiles: KeyFiles{Key: d.AuthKey(), Pub: d.AuthPub(), Retired: d.AuthRetired(), CSRF: d.CSRFKey(), GID: gid},
		Realms:   &realm.Realms{Passwords: pw, PAM: realm.PAM{Service: pamService}}, Revocations: rev, TFA: tf, ACL: ac, Log: log,
	})
	if err != nil {
		return fail(err)
	}
	return s, gen, nil
}

package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"gatehouse/apidclient"
	"gatehouse/shmem"
)

// DefaultProxyURL is where status probes proxyd.
const DefaultProxyURL = "https://127.0.0.1:8007"

// probeTimeout bounds the probe of proxyd.
const probeTimeout = 5 * time.Second

// generationNames are the shmem counters by the names apid's status uses.
var generationNames = [...]struct {
	name    string
	counter shmem.Counter
}{{"user", shmem.User}, {"token-shadow", shmem.TokenShadow}, {"tfa", shmem.TFA}, {"keys", shmem.Keys}}

// statusReport is what status prints; in JSON, as is.
type statusReport struct {
	Apid        apidStatus   `json:"apid"`
	Proxyd      proxydStatus `json:"proxyd"`
	Generations genStatus    `json:"generations"`
}

type apidStatus struct {
	Up     bool   `json:"up"`
	Socket string `json:"socket"`
	Error  string `json:"error,omitempty"`
	// apid's own answer (GET /status): version, pid, started, uptime, generations, key.
	Status json.RawMessage `json:"status,omitempty"`
}

type proxydStatus struct {
	Up    bool   `json:"up"`
	URL   string `json:"url"`
	Error string `json:"error,omitempty"`
}

// genStatus are the generation counters: from apid's page when apid serves it, else from the
// page's mirror file (which works with apid down).
type genStatus struct {
	// Source is "page" (apid's page, attached through <run-dir>/shmem.sock) or "mirror" (the
	// mirror file, at most one health check behind the page); "" when neither could be read.
	Source string            `json:"source,omitempty"`
	Values map[string]uint64 `json:"values,omitempty"`
	// Path is the mirror's. State is the mirror's: "ok", "missing", "broken" (the file is
	// invalid: apid moves it aside and writes a new one) or "unreadable" (permissions, I/O).
	Path  string `json:"path"`
	Error string `json:"error,omitempty"`
	State string `json:"state"`
	// MovedAside are the invalid mirror files apid moved aside ("<name>.corrupt-<unix time>").
	MovedAside []string `json:"moved_aside,omitempty"`
}

// apidStatusJSON is the part of apid's GET /status that text output shows.
type apidStatusJSON struct {
	Version     string            `json:"version"`
	PID         int               `json:"pid"`
	Started     int64             `json:"started"`
	Uptime      int64             `json:"uptime"`
	Generations map[string]uint64 `json:"generations"`
	Key         rotateJSON        `json:"key"`
}

func (a *app) statusCommand() *cobra.Command {
	a.proxyURL = DefaultProxyURL
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show whether apid and proxyd are up, and the generation counters",
		Long: `Show apid's status (GET /status: version, pid, uptime, signing key), whether proxyd
answers GET /api2/json/ping at --proxy-url (trusting <config-dir>/proxy.pem), and the generation
counters: from apid's page (through <run-dir>/shmem.sock) when apid serves it, else from its
mirror <run-dir>/shmem/config-versions (which works with apid down); a missing or invalid mirror
shows as MISSING or BROKEN with the reason, and the invalid mirrors apid moved aside
(config-versions.corrupt-<unix time>) are listed.

Exit code 0 when apid answers, 3 when it is unreachable (the rest is still printed). proxyd
being down does not change the exit code: it shows as "down" (JSON: .proxyd.up is false).`,
		Args: argsNamed(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			r, apidErr := a.status(cmd.Context())
			p := a.printer()
			var err error
			if p.text() {
				err = p.statusText(r)
			} else {
				err = p.json(r)
			}
			if apidErr != nil {
				return fmt.Errorf("status: %w", apidErr)
			}
			return err
		},
	}
	cmd.Flags().StringVar(&a.proxyURL, "proxy-url", DefaultProxyURL, "proxyd's base URL to probe")
	return cmd
}

// status gathers the report; the error is apid's, for the exit code.
func (a *app) status(ctx context.Context) (statusReport, error) {
	r := statusReport{
		Apid:        apidStatus{Socket: a.dirs.Socket()},
		Proxyd:      proxydStatus{URL: strings.TrimSuffix(a.proxyURL, "/")},
		Generations: genStatus{Path: a.dirs.Generations()},
	}
	mirror, err := shmem.ReadMirror(a.dirs.Generations())
	r.Generations.State = genState(err)
	if err != nil {
		r.Generations.Error = err.Error()
	}
	if page, perr := shmem.Dial(a.dirs.ShmemSocket()); perr == nil {
		r.Generations.Source, r.Generations.Values = "page", named(func(k shmem.Counter) uint64 { return page.Load(k) })
		page.Close()
	} else if err == nil {
		r.Generations.Source, r.Generations.Values = "mirror", named(func(k shmem.Counter) uint64 { return mirror[k] })
	}
	r.Generations.MovedAside, _ = filepath.Glob(a.dirs.Generations() + ".corrupt-*")
	if err := a.probeProxyd(ctx, r.Proxyd.URL); err != nil {
		r.Proxyd.Error = err.Error()
	} else {
		r.Proxyd.Up = true
	}
	var raw json.RawMessage
	err = a.client().Call(ctx, http.MethodGet, "status", nil, &raw)
	if err != nil {
		r.Apid.Error = err.Error()
	} else {
		r.Apid.Status = raw
	}
	r.Apid.Up = !errors.Is(err, apidclient.ErrUnreachable)
	return r, err
}

// named returns every counter by the name apid's status uses.
func named(load func(shmem.Counter) uint64) map[string]uint64 {
	out := map[string]uint64{}
	for _, g := range generationNames {
		out[g.name] = load(g.counter)
	}
	return out
}

// genState classifies ReadMirror's error (see genStatus.State).
func genState(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, fs.ErrNotExist):
		return "missing"
	case shmem.IsInvalid(err):
		return "broken"
	}
	return "unreadable"
}

// probeProxyd asks proxyd's public ping, trusting the config dir's proxy.pem.
func (a *app) probeProxyd(ctx context.Context, base string) error {
	pool := x509.NewCertPool()
	if pem, err := os.ReadFile(a.dirs.ProxyCert()); err != nil {
		return fmt.Errorf("reading proxyd's certificate: %w", err)
	} else if !pool.AppendCertsFromPEM(pem) {
		return fmt.Errorf("reading proxyd's certificate %s: no PEM certificate", a.dirs.ProxyCert())
	}
	hc := &http.Client{Timeout: probeTimeout, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	defer hc.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api2/json/ping", nil)
	if err != nil {
		return fmt.Errorf("probing proxyd: %w", err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var ans struct {
		Data struct {
			Pong bool `json:"pong"`
		} `json:"data"`
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET /api2/json/ping answered %s", resp.Status)
	}
	if err := json.NewDecoder(http.MaxBytesReader(nil, resp.Body, 64<<10)).Decode(&ans); err != nil || !ans.Data.Pong {
		return errors.New("GET /api2/json/ping answered without pong")
	}
	return nil
}

func (p printer) statusText(r statusReport) error {
	var fs []field
	switch {
	case r.Apid.Status != nil:
		var s apidStatusJSON
		if err := json.Unmarshal(r.Apid.Status, &s); err != nil {
			return fmt.Errorf("reading apid's status: %w", err)
		}
		up := (time.Duration(s.Uptime) * time.Second).String()
		fs = append(fs, field{"apid", fmt.Sprintf("up, pid %d, version %s, up %s (since %s)", s.PID, s.Version, up, p.when(s.Started))})
		if s.Key.Fingerprint != "" {
			fs = append(fs, field{"signing key", s.Key.Algorithm + " " + s.Key.Fingerprint})
		}
		for _, old := range s.Key.Previous {
			fs = append(fs, field{"previous key", old.Fingerprint + ", its tickets valid until " + p.when(old.ValidUntil)})
		}
	case r.Apid.Up:
		fs = append(fs, field{"apid", "up, but status failed: " + r.Apid.Error})
	default:
		fs = append(fs, field{"apid", "down: " + r.Apid.Error})
	}
	if r.Proxyd.Up {
		fs = append(fs, field{"proxyd", "up (" + r.Proxyd.URL + ")"})
	} else {
		fs = append(fs, field{"proxyd", "down (" + r.Proxyd.URL + "): " + r.Proxyd.Error})
	}
	if r.Generations.Source != "" {
		var parts []string
		for _, g := range generationNames {
			parts = append(parts, fmt.Sprintf("%s %d", g.name, r.Generations.Values[g.name]))
		}
		from := "apid's page"
		if r.Generations.Source == "mirror" {
			from = "the mirror file, as apid last wrote it"
		}
		fs = append(fs, field{"generations", strings.Join(parts, ", ") + " (" + from + ")"})
	}
	switch r.Generations.State {
	case "missing", "broken":
		fs = append(fs, field{"mirror", strings.ToUpper(r.Generations.State) + " (apid writes it anew within 1 s while it runs, or at its start): " + r.Generations.Error})
	case "unreadable":
		fs = append(fs, field{"mirror", "unreadable: " + r.Generations.Error})
	}
	for _, name := range r.Generations.MovedAside {
		fs = append(fs, field{"moved aside", name})
	}
	return p.fields(fs)
}

// rotateJSON is apid's answer to POST /keys/rotate.
type rotateJSON struct {
	Algorithm   string `json:"algorithm"`
	Fingerprint string `json:"fingerprint"`
	Previous    []struct {
		Fingerprint string `json:"fingerprint"`
		ValidUntil  int64  `json:"valid-until"`
	} `json:"previous"`
}

func (a *app) keyCommand() *cobra.Command {
	cmd := group("key", "Manage the ticket signing key")
	var revoke bool
	rotate := &cobra.Command{
		Use:   "rotate",
		Short: "Make a new ticket signing key; sessions of the old one last until they expire, or end with --revoke-sessions",
		Long: `Make a new ticket signing key (POST /keys/rotate). New tickets are signed with it at once.
Tickets signed with the previous key keep working as sessions until they expire (printed) but
are never renewed. With --revoke-sessions the previous keys are dropped and every ticket issued
before the rotation stops working at once, in every proxyd: every user signs in again. Use it
when a signing key may have been copied: whoever holds an old key can sign tickets dated
before its retirement, which work until they expire unless the sessions are revoked.`,
		Args: argsNamed(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			var p url.Values
			if revoke {
				p = url.Values{"revoke-sessions": {"1"}}
			}
			var raw json.RawMessage
			if err := a.client().Call(cmd.Context(), http.MethodPost, "keys/rotate", p, &raw); err != nil {
				return fmt.Errorf("rotating the signing key: %w", err)
			}
			pr := a.printer()
			return show(pr, raw, func(r rotateJSON) error {
				fs := []field{{"algorithm", r.Algorithm}, {"fingerprint", r.Fingerprint}}
				for _, old := range r.Previous {
					fs = append(fs, field{"previous", old.Fingerprint + ", its tickets valid until " + pr.when(old.ValidUntil)})
				}
				if revoke {
					fs = append(fs, field{"sessions", "every ticket issued before the rotation is revoked"})
				}
				return pr.fields(fs)
			})
		},
	}
	rotate.Flags().BoolVar(&revoke, "revoke-sessions", false, "end every ticket issued before the rotation (every user signs in again)")
	cmd.AddCommand(rotate)
	return cmd
}

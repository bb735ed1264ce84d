package gateway

import (
	"crypto/tls"
	"crypto/x509"
	"flag"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gatehouse/tlscert"
)

func TestLimitsCheck(t *testing.T) {
	for _, tt := range []struct {
		name string
		args []string
		err  string // "" for none
	}{
		{"defaults", nil, ""},
		{"short timeouts", []string{"--read-timeout", "1s", "--write-timeout", "2s", "--idle-timeout", "1s", "--read-header-timeout", "500ms"}, ""},
		{"no caps", []string{"--max-conns", "0", "--max-conns-per-client", "0"}, ""},
		{"zero read timeout", []string{"--read-timeout", "0"}, "--read-timeout 0s: want a positive duration"},
		{"negative write timeout", []string{"--write-timeout", "-1s"}, "--write-timeout -1s: want a positive duration"},
		{"zero idle timeout", []string{"--idle-timeout", "0s"}, "--idle-timeout 0s"},
		{"zero header timeout", []string{"--read-header-timeout", "0s"}, "--read-header-timeout 0s"},
		{"tiny header limit", []string{"--max-header-bytes", "100"}, "--max-header-bytes 100: want at least 1024"},
		{"negative cap", []string{"--max-conns", "-1"}, "want 0 (no cap) or more"},
		{"negative per-client cap", []string{"--max-conns-per-client", "-5"}, "want 0 (no cap) or more"},
	} {
		var l Limits
		fl := flag.NewFlagSet("proxyd", flag.ContinueOnError)
		l.flags(fl)
		if err := fl.Parse(tt.args); err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		err := l.check()
		if (err == nil) != (tt.err == "") || (err != nil && !strings.Contains(err.Error(), tt.err)) {
			t.Errorf("%s: check(%q) = %v; want %q", tt.name, tt.args, err, tt.err)
		}
	}
}

// TestLimitsServer: the flags' defaults reach the http.Server.
func TestLimitsServer(t *testing.T) {
	var l Limits
	fl := flag.NewFlagSet("proxyd", flag.ContinueOnError)
	l.flags(fl)
	if err := fl.Parse(nil); err != nil {
		t.Fatal(err)
	}
	srv := l.server(http.NotFoundHandler(), nil, nil)
	got := []any{srv.ReadHeaderTimeout, srv.ReadTimeout, srv.WriteTimeout, srv.IdleTimeout, srv.MaxHeaderBytes, srv.HTTP2.MaxConcurrentStreams}
	want := []any{10 * time.Second, 30 * time.Second, 60 * time.Second, 30 * time.Second, 16384, 100}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("server field %d = %v; want %v", i, got[i], want[i])
		}
	}
	if l.MaxConns != DefaultMaxConns || l.MaxConnsPerClient != DefaultMaxConnsPerClient {
		t.Errorf("caps = %d, %d; want %d, %d", l.MaxConns, l.MaxConnsPerClient, DefaultMaxConns, DefaultMaxConnsPerClient)
	}
}

// TestTLSConfig: a TLS listener with tlsConfig and tlscert's certificate (ECDSA P-256, as
// proxyd makes it) refuses what Mozilla's intermediate profile leaves out and accepts the rest.
func TestTLSConfig(t *testing.T) {
	dir := t.TempDir()
	key, certPath := filepath.Join(dir, "proxy.key"), filepath.Join(dir, "proxy.pem")
	if _, err := tlscert.Ensure(key, certPath, os.Getgid(), time.Now()); err != nil {
		t.Fatal(err)
	}
	pair, err := tls.LoadX509KeyPair(certPath, key)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", tlsConfig(func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &pair, nil }))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				c.(*tls.Conn).Handshake()
				io.Copy(io.Discard, c)
				c.Close()
			}()
		}
	}()
	pem, err := os.ReadFile(certPath)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	for _, tt := range []struct {
		name     string
		min, max uint16
		suites   []uint16
		curves   []tls.CurveID
		ok       bool
	}{
		{"TLS 1.2 AES-128-CBC-SHA", tls.VersionTLS12, tls.VersionTLS12, []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA}, nil, false},
		{"TLS 1.2 AES-256-CBC-SHA", tls.VersionTLS12, tls.VersionTLS12, []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA}, nil, false},
		{"TLS 1.2 AES-128-CBC-SHA256", tls.VersionTLS12, tls.VersionTLS12, []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256}, nil, false},
		{"TLS 1.0", tls.VersionTLS10, tls.VersionTLS10, nil, nil, false},
		{"TLS 1.1", tls.VersionTLS11, tls.VersionTLS11, nil, nil, false},
		{"TLS 1.2 P-521 only", tls.VersionTLS12, tls.VersionTLS12, nil, []tls.CurveID{tls.CurveP521}, false},
		{"TLS 1.2 AES-128-GCM", tls.VersionTLS12, tls.VersionTLS12, []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}, nil, true},
		{"TLS 1.2 AES-256-GCM", tls.VersionTLS12, tls.VersionTLS12, []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384}, nil, true},
		{"TLS 1.2 ChaCha20-Poly1305", tls.VersionTLS12, tls.VersionTLS12, []uint16{tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256}, nil, true},
		{"TLS 1.2 P-384 only", tls.VersionTLS12, tls.VersionTLS12, nil, []tls.CurveID{tls.CurveP384}, true},
		{"TLS 1.3", tls.VersionTLS13, tls.VersionTLS13, nil, nil, true},
		{"TLS 1.3 X25519MLKEM768 only", tls.VersionTLS13, tls.VersionTLS13, nil, []tls.CurveID{tls.X25519MLKEM768}, true},
	} {
		cfg := &tls.Config{RootCAs: pool, ServerName: "localhost", MinVersion: tt.min, MaxVersion: tt.max, CipherSuites: tt.suites, CurvePreferences: tt.curves}
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", ln.Addr().String(), cfg)
		if err == nil {
			c.Close()
		}
		if (err == nil) != tt.ok {
			t.Errorf("handshake, %s: %v; want ok %v", tt.name, err, tt.ok)
		}
	}
}

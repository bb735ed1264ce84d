# Gatehouse. `make run` and `make test` are the two commands a newcomer needs (see README.md).
SHELL := /bin/bash
GO ?= go
export PATH := $(PATH):/usr/local/go/bin:$(shell $(GO) env GOPATH 2>/dev/null)/bin
STATICCHECK_VERSION := v0.8.2
FUZZTIME ?= 30s
SMOKE_FUZZTIME ?= 3s
BENCHTIME ?= 1s
LOADTIME ?= 5s
# Debian packages the build and tests need: command or file, then package. libpam0g-dev has the
# PAM headers the pam realm is built against (cgo); openssl, mkpasswd (whois), oathtool and curl
# (the demo's printed commands) are real peers; systemd-analyze checks the units; nginx
# (auth_request) and caddy (forward_auth) front proxyd in the forward-auth tests, with the
# README's configurations; chromium (headless, driven by chromedp) runs the browser tests: login
# page, cookie flags, cross-site POST, WebAuthn; zbarimg (zbar-tools) reads the TOTP QR code the
# account page shows.
DEB_TOOLS := openssl:openssl mkpasswd:whois oathtool:oathtool /usr/include/security/pam_appl.h:libpam0g-dev gcc:gcc curl:curl \
	systemd-analyze:systemd /usr/sbin/nginx:nginx caddy:caddy chromium:chromium zbarimg:zbar-tools
# Every fuzz target: package and function (TestFuzzTargetsListed checks none is missing). The
# two FuzzServe targets send whole requests to proxyd's and apid's handlers.
FUZZ_TARGETS := ./authid:FuzzParse ./acl:FuzzParse ./tokenshadow:FuzzParse ./crypthash:FuzzCheckScheme ./shmem:FuzzReadMirror \
	./revocation:FuzzParse ./params:FuzzRead ./realm:FuzzParseShadow ./sectionconfig:FuzzParse ./users:FuzzParse \
	./ticket:FuzzVerify ./ticket:FuzzCSRFCheck ./ticket:FuzzRoundTrip ./ticket:FuzzParseKeys ./ticket:FuzzParseRetired ./apidclient:FuzzDecodeAnswer \
	./gateway:FuzzLocalPath ./gateway:FuzzStripCookies ./forward:FuzzInternal \
	./authfail:FuzzSanitize ./authfail:FuzzFailLine ./authfail:FuzzClientAddr \
	./credential:FuzzParseTokenHeader ./credential:FuzzDecode \
	./tfa:FuzzParse ./tfa:FuzzParseResponse ./tfa:FuzzTOTPURI ./tfa:FuzzSplitChallenge \
	./tfa:FuzzWebauthnLogin ./tfa:FuzzWebauthnRegistration ./gateway:FuzzServe ./authority:FuzzServe

.PHONY: all build run run-reset test check deps fuzz fuzz-smoke bench report clean install uninstall

all: build

build: deps
	$(GO) build ./...
	$(GO) vet ./...

# `make run`: builds the daemons into demo/bin and runs them in ./demo with a bootstrap admin
# (package demostack); proxyd on 127.0.0.1:$(DEMO_PORT). Ctrl-C stops both. `make run-reset`
# removes ./demo (the admin, its password and every key) to start over.
DEMO_PORT ?= 8007
run: deps
	$(GO) build -o demo/bin/ ./cmd/apid ./cmd/proxyd ./cmd/gatehouse-demo $(if $(wildcard cmd/gatectl),./cmd/gatectl)
	demo/bin/gatehouse-demo --dir demo --port $(DEMO_PORT)

run-reset:
	rm -rf demo

# Installs what the tests need (as root, or through sudo), then runs everything:
# formatting, vet, staticcheck, all tests with -race and -shuffle, and a short fuzz pass.
test: deps check
	GATEHOUSE_REQUIRE_TOOLS=$${CI:+1} $(GO) test -race -shuffle=on -count=1 -timeout 20m ./...
	$(MAKE) --no-print-directory fuzz-smoke

check:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...
	@command -v staticcheck >/dev/null || { echo "installing staticcheck $(STATICCHECK_VERSION)..."; \
		$(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION); }
	staticcheck ./...

deps:
	@missing=""; for pair in $(DEB_TOOLS); do cmd=$${pair%%:*}; pkg=$${pair##*:}; \
		{ [ -e "$$cmd" ] || command -v $$cmd >/dev/null; } || missing="$$missing $$pkg"; done; \
	if [ -n "$$missing" ]; then \
		sudo=""; [ "$$(id -u)" = 0 ] || sudo=sudo; \
		echo "installing Debian packages:$$missing"; \
		$$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq $$missing \
			|| { echo "could not install$$missing: the build needs libpam0g-dev and gcc; without openssl, whois and oathtool the interop tests are skipped or fail"; [ -z "$$CI" ]; }; \
	fi
	$(GO) mod download

# A run that fails with "context deadline exceeded" and writes no failing input is Go's fuzz
# coordinator racing its own -fuzztime deadline (go.dev/issue/75804, fixed in Go 1.27; seen in
# CI on go1.26.8, about once in 30 runs on a loaded machine): that target runs again, up to 3
# times in all. A real failure always writes its input under testdata/fuzz and fails the run.
# (A count budget, -fuzztime=Nx, avoids the race but would need a count per target: their
# speeds differ 400-fold.)
fuzz:
	@n=0; total=$(words $(FUZZ_TARGETS)); log=$$(mktemp); trap 'rm -f $$log' EXIT; \
	for t in $(FUZZ_TARGETS); do pkg=$${t%%:*}; fn=$${t##*:}; n=$$((n+1)); \
		for try in 1 2 3; do \
			echo "[$$n/$$total] fuzzing $$fn in $$pkg for $(FUZZTIME)"; \
			before=$$(ls $$pkg/testdata/fuzz/$$fn 2>/dev/null | wc -l); \
			$(GO) test -run='^$$' -fuzz="^$$fn\$$" -fuzztime=$(FUZZTIME) $$pkg 2>&1 | tee $$log; \
			[ $${PIPESTATUS[0]} = 0 ] && break; \
			after=$$(ls $$pkg/testdata/fuzz/$$fn 2>/dev/null | wc -l); \
			if [ $$try != 3 ] && [ "$$after" = "$$before" ] && grep -q 'context deadline exceeded' $$log; then \
				echo "$$fn: no failing input written, Go's fuzz deadline race (go.dev/issue/75804); again"; continue; fi; \
			exit 1; \
		done; \
	done

fuzz-smoke:
	@$(MAKE) --no-print-directory fuzz FUZZTIME=$(SMOKE_FUZZTIME)

# `make bench`: every package's go test benchmarks, then the harness (package bench): the
# verify table and the load table through real apid and proxyd processes, LOADTIME per row.
bench:
	$(GO) test -run='^$$' -bench=. -benchmem ./...
	$(GO) run ./bench -benchtime $(BENCHTIME) -duration $(LOADTIME)

# `make report`: runs the harness, the resource-exhaustion attacks included (about 3 minutes
# more), and rewrites the Report section of README.md (between its report markers) with the
# figures, the machine and the command.
report:
	$(GO) run ./bench -benchtime $(BENCHTIME) -duration $(LOADTIME) -attack -report README.md

clean:
	$(GO) clean -testcache

# Installation: daemons in $(PREFIX)/sbin, gatectl (when cmd/gatectl exists) in $(PREFIX)/bin,
# systemd units in $(UNITDIR) with ExecStart under $(PREFIX). DESTDIR stages the tree for a
# package; only a real install (empty DESTDIR) creates the gatehouse system user and group and
# reloads systemd.
PREFIX ?= /usr/local
UNITDIR ?= /etc/systemd/system
DAEMONS := apid proxyd
UNITS := cmd/apid/gatehouse-apid.service cmd/proxyd/gatehouse-proxyd.service
CLIS := $(notdir $(wildcard cmd/gatectl))

install:
	install -d -m 0755 $(DESTDIR)$(PREFIX)/sbin $(DESTDIR)$(UNITDIR)
	$(GO) build -o $(DESTDIR)$(PREFIX)/sbin/ $(addprefix ./cmd/,$(DAEMONS))
	chmod 0755 $(addprefix $(DESTDIR)$(PREFIX)/sbin/,$(DAEMONS))
ifneq ($(CLIS),)
	install -d -m 0755 $(DESTDIR)$(PREFIX)/bin
	$(GO) build -o $(DESTDIR)$(PREFIX)/bin/ $(addprefix ./cmd/,$(CLIS))
	chmod 0755 $(addprefix $(DESTDIR)$(PREFIX)/bin/,$(CLIS))
endif
	for u in $(UNITS); do \
		sed 's|^ExecStart=/usr/local/|ExecStart=$(PREFIX)/|' $$u > $(DESTDIR)$(UNITDIR)/$$(basename $$u) && \
		chmod 0644 $(DESTDIR)$(UNITDIR)/$$(basename $$u) || exit 1; done
	@if [ -z "$(DESTDIR)" ]; then \
		getent group gatehouse >/dev/null || groupadd --system gatehouse || exit 1; \
		getent passwd gatehouse >/dev/null || useradd --system --gid gatehouse --no-create-home \
			--home-dir /nonexistent --shell /usr/sbin/nologin --comment "Gatehouse proxyd" gatehouse || exit 1; \
		if [ -d /run/systemd/system ]; then systemctl daemon-reload; fi; \
		echo "installed; start with: systemctl enable --now gatehouse-apid gatehouse-proxyd"; \
	fi

# Removes what install put in place; keeps /etc/gatehouse (keys, users) and the gatehouse user.
uninstall:
	@if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then \
		systemctl disable --now gatehouse-proxyd gatehouse-apid 2>/dev/null || true; fi
	rm -f $(addprefix $(DESTDIR)$(PREFIX)/sbin/,$(DAEMONS)) $(addprefix $(DESTDIR)$(PREFIX)/bin/,$(CLIS)) \
		$(addprefix $(DESTDIR)$(UNITDIR)/,$(notdir $(UNITS)))
	@if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then systemctl daemon-reload; fi

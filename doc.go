// Package gatehouse is privilege-separated authentication for self-hosted HTTPS services, in
// the shape of the Proxmox Backup Server authentication stack. This root package holds no code:
// it carries repository-wide tests (every package states its job in a package comment).
//
// Packages:
//   - authid: PBS user and token id syntax (user@realm, user@realm!token).
//   - lockfile: flock-based config locks with a timeout, and atomic file replacement.
//   - shmem: the ConfigVersionCache, a 4096-byte mmap'ed file of generation counters.
//   - crypthash: crypt(3) hashes of secrets ($5$ made; $5$, $6$, $y$ checked).
//   - tokenshadow: token.shadow and the per-process verified-secret cache.
//   - sectionconfig: PBS's section-config text format.
//   - users: user.cfg (users and API token entries), cached by the user generation.
//   - realm: password checks: the pbs realm (shadow.json) and the pam realm (PAM).
//   - ticket: PBS tickets, signing keys and CSRF tokens; proxyd's verified-ticket cache.
//   - revocation: per-user ticket revocation times (logout, password change).
//   - authfail: the fail2ban auth log, the per-client failure limit and delay.
//   - params: API call parameters as Proxmox clients send them.
//   - forward: the internal headers of a call proxyd forwards to apid.
//   - reply: API answers in PBS's JSON shape.
//   - peercred: unix-socket admission by SO_PEERCRED uid.
//   - tlscert: proxyd's self-signed certificate, made on first start.
//   - layout: the files under --config-dir and --run-dir, with owners and modes.
//   - authority: apid's handler and daemon (cmd/apid).
//   - gateway: proxyd's handler and daemon (cmd/proxyd).
//   - bench: the benchmark harness (go run ./bench).
//
// The design, wire and file formats are in DESIGN.md of the project's shared folder.
package gatehouse

// Package gatehouse is privilege-separated authentication for self-hosted HTTPS services, in
// the shape of the Proxmox Backup Server authentication stack. This root package holds no code:
// it carries repository-wide tests (every package states its job in a package comment).
//
// Packages:
//   - authid: PBS user and token id syntax (user@realm, user@realm!token).
//   - lockfile: flock-based config locks with a timeout, and atomic file replacement.
//   - shmem: the ConfigVersionCache, a 4096-byte mmap'ed file of generation counters.
//   - tokenshadow: token.shadow and the per-process verified-secret cache.
//   - bench: the benchmark harness (go run ./bench).
//
// The design, wire and file formats are in DESIGN.md of the project's shared folder.
package gatehouse

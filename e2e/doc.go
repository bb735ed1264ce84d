// Package e2e holds Gatehouse's end-to-end tests: apid and proxyd run as real child processes
// (the test binary re-executed in the role of each daemon), on a temporary config and run
// directory, talking over a real unix socket, with proxyd on a loopback port reached over HTTPS.
// When the tests run as root, proxyd runs as uid 65534 (nobody), so the privilege separation
// itself is under test: proxyd must be unable to read authkey.key and shadow.json.
package e2e

module gatehouse

go 1.26.0

require (
	github.com/go-crypt/crypt v0.14.15
	github.com/gofrs/flock v0.13.1
	github.com/google/uuid v1.6.0
	github.com/luthermonson/go-proxmox v0.8.2
	github.com/minio/sha256-simd v1.0.1
	github.com/msteinert/pam/v2 v2.1.0
	golang.org/x/sync v0.24.0
	golang.org/x/sys v0.49.0
)

require (
	github.com/buger/goterm v1.0.4 // indirect
	github.com/diskfs/go-diskfs v1.9.3 // indirect
	github.com/djherbis/times v1.6.0 // indirect
	github.com/go-crypt/x v0.4.16 // indirect
	github.com/gorilla/websocket v1.4.2 // indirect
	github.com/jinzhu/copier v0.3.4 // indirect
	github.com/klauspost/cpuid/v2 v2.2.3 // indirect
	github.com/magefile/mage v1.14.0 // indirect
)

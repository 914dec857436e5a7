package testutil

import (
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"testing"
)

// Ports handed out by FreeAddr are below the kernel's ephemeral range
// (Linux: 32768 to 60999), where outgoing connections take their local
// ports: a port picked from that range could be taken by any connection
// before the server that was to bind it does. Within one test process
// none is handed out twice.
const (
	portLow  = 20000
	portHigh = 32000
)

var (
	portsMu sync.Mutex
	given   = map[int]bool{}
)

// FreeAddr returns a 127.0.0.1 address with a port that was free a moment
// ago (a listener bound it and closed), chosen at random below the
// ephemeral range and never returned before in this process. Another
// process may still take it before the caller binds it: tests that start
// servers on it should be ready to retry, as rare as that is.
func FreeAddr(t testing.TB) string {
	t.Helper()
	portsMu.Lock()
	defer portsMu.Unlock()
	for range 1000 {
		port := portLow + rand.IntN(portHigh-portLow)
		if given[port] {
			continue
		}
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue
		}
		l.Close()
		given[port] = true
		return l.Addr().String()
	}
	t.Fatal("testutil: no free port found below the ephemeral range")
	return ""
}

package transport

import (
	"net"
	"strings"
	"syscall"
)

// errTooManyFiles is the accept error of a process out of descriptors.
var errTooManyFiles = syscall.EMFILE

// unixPrefix marks a Unix socket address.
const unixPrefix = "unix:"

// splitAddr returns the network and address of addr: "unix" and the path
// for "unix:/path", "tcp" and addr otherwise.
func splitAddr(addr string) (network, address string) {
	if path, ok := strings.CutPrefix(addr, unixPrefix); ok {
		return "unix", path
	}
	return "tcp", addr
}

// Listen listens on addr: "host:port" for TCP, "unix:/path" for a Unix
// socket (which must not exist yet; it is removed when the listener is
// closed).
func Listen(addr string) (net.Listener, error) {
	return net.Listen(splitAddr(addr))
}

package server

import (
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"time"
)

// removeStaleSocket removes the Unix socket at path when nothing listens
// on it: the file a node that crashed or was killed left behind (a clean
// stop removes its socket). A socket that another process serves is an
// error; a path that is not a socket, or that cannot be dialed for
// another reason, is left for the listen to report.
func (n *Node) removeStaleSocket(path string) error {
	fi, err := os.Lstat(path)
	if err != nil || fi.Mode()&os.ModeSocket == 0 {
		return nil
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		c.Close()
		return fmt.Errorf("server: unix socket %s: another process listens on it", path)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return nil
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("server: removing the stale unix socket %s: %w", path, err)
	}
	n.log.Info("removed a stale unix socket; nothing listened on it", "path", path)
	return nil
}

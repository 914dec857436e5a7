package server

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
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

// unixListener is a Unix socket listener bound at a temporary name and
// linked at path: it reports path as its address and, when closed,
// removes path if the file there is still its socket (not one a newer
// process has put there since).
type unixListener struct {
	*net.UnixListener
	addr *net.UnixAddr
	file os.FileInfo // the socket file, to tell it from another at path
	once sync.Once
	err  error
}

func (l *unixListener) Addr() net.Addr { return l.addr }

func (l *unixListener) Close() error {
	l.once.Do(func() {
		l.err = l.UnixListener.Close()
		if fi, err := os.Lstat(l.addr.Name); err == nil && os.SameFile(fi, l.file) {
			if err := os.Remove(l.addr.Name); err != nil && l.err == nil {
				l.err = err
			}
		}
	})
	return l.err
}

// listenUnix listens on a Unix socket at path whose file has mode and,
// when gid is not -1, group gid from the moment it exists there: the
// socket is bound in a directory of its own (mode 0700) beside path,
// given its mode and group there, and then hard-linked at path, which
// fails if path exists. So no client ever finds it with the mode of the
// process's umask, and no other file is replaced.
func listenUnix(path string, mode os.FileMode, gid int) (net.Listener, error) {
	// A short name: a socket's path is limited (108 bytes on Linux).
	dir, err := os.MkdirTemp(filepath.Dir(path), ".ls")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	tmp := filepath.Join(dir, "s")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return nil, err
	}
	l.SetUnlinkOnClose(false)
	fail := func(err error) (net.Listener, error) {
		l.Close()
		return nil, err
	}
	if err := os.Chmod(tmp, mode); err != nil {
		return fail(err)
	}
	if gid != -1 {
		if err := os.Lchown(tmp, -1, gid); err != nil {
			return fail(fmt.Errorf("setting the group: %w", err))
		}
	}
	fi, err := os.Lstat(tmp)
	if err != nil {
		return fail(err)
	}
	if err := os.Link(tmp, path); err != nil {
		return fail(err)
	}
	return &unixListener{UnixListener: l, addr: &net.UnixAddr{Name: path, Net: "unix"}, file: fi}, nil
}

// lookupGroup returns the id of group, a name or a number; -1 for "".
func lookupGroup(group string) (int, error) {
	if group == "" {
		return -1, nil
	}
	if id, err := strconv.Atoi(group); err == nil {
		return id, nil
	}
	g, err := user.LookupGroup(group)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(g.Gid)
}

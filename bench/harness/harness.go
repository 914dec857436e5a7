// Package harness holds what the benchmark programs under bench/ share
// (their own modules among them, which reach it through their replace of
// the main module): child processes started and stopped by their
// handles, free ports, and readings of /proc (CPU time, peak resident
// set, the machine's load). It is not part of the product.
package harness

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Proc is a child process with its log file.
type Proc struct {
	Name string
	Cmd  *exec.Cmd
	logf *os.File
}

// StartProc starts bin with args, its output going to a new file at
// logPath.
func StartProc(name, bin string, args []string, logPath string) (*Proc, error) {
	p := &Proc{Name: name, Cmd: exec.Command(bin, args...)}
	var err error
	if p.logf, err = os.Create(logPath); err != nil {
		return nil, err
	}
	p.Cmd.Stdout, p.Cmd.Stderr = p.logf, p.logf
	if err := p.Cmd.Start(); err != nil {
		p.logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	return p, nil
}

// Stop kills the process by its handle and waits for it.
func (p *Proc) Stop() {
	if p == nil {
		return
	}
	if p.Cmd.Process != nil {
		_ = p.Cmd.Process.Signal(syscall.SIGKILL)
		_ = p.Cmd.Wait()
	}
	p.logf.Close()
}

// PIDs returns the processes' ids.
func PIDs(ps []*Proc) []int {
	var pids []int
	for _, p := range ps {
		pids = append(pids, p.Cmd.Process.Pid)
	}
	return pids
}

// Tail returns the last n lines of the process's log.
func (p *Proc) Tail(n int) string {
	b, err := os.ReadFile(p.logf.Name())
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// Tails returns the last lines of each process's log, for an error.
func Tails(ps []*Proc) string {
	var b strings.Builder
	for _, p := range ps {
		fmt.Fprintf(&b, "%s log, last lines:\n%s\n", p.Name, p.Tail(5))
	}
	return b.String()
}

// FreePorts returns n distinct free TCP ports on 127.0.0.1.
func FreePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// clockTick is USER_HZ, the unit of /proc's CPU times (100 on Linux).
const clockTick = 100

// ProcsCPU returns the user and system CPU time the processes used so far
// (0 for one that cannot be read).
func ProcsCPU(pids []int) time.Duration {
	var t time.Duration
	for _, pid := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		// utime and stime are the 14th and 15th fields; the command name
		// (2nd, in parentheses) may hold spaces.
		f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
		if len(f) < 13 {
			continue
		}
		u, _ := strconv.ParseInt(f[11], 10, 64)
		s, _ := strconv.ParseInt(f[12], 10, 64)
		t += time.Duration(u+s) * time.Second / clockTick
	}
	return t
}

// ResetPeakRSS asks the kernel to reset each process's peak resident set
// (VmHWM) to its current one; it reports whether it could for all.
func ResetPeakRSS(pids []int) bool {
	ok := true
	for _, pid := range pids {
		if os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0) != nil {
			ok = false
		}
	}
	return ok
}

// PeakRSS returns the sum of the processes' peak resident sets (VmHWM).
func PeakRSS(pids []int) int64 {
	var sum int64
	for _, pid := range pids {
		f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
				kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
				sum += kb << 10
			}
		}
		f.Close()
	}
	return sum
}

// MachineCPU returns the busy and total jiffies of all CPUs (/proc/stat).
func MachineCPU() (busy, total int64) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	for i, v := range strings.Fields(line)[1:] {
		n, _ := strconv.ParseInt(v, 10, 64)
		total += n
		if i != 3 && i != 4 { // idle, iowait
			busy += n
		}
	}
	return busy, total
}

// LoadAvg returns /proc/loadavg's first three fields.
func LoadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// Median returns the median of v (the mean of the middle two for an even
// count), 0 for none; v is not changed.
func Median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

package testcluster

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"sync"
)

// Proc is a program the test runs as a separate process, so that it can
// kill it with SIGKILL at any point. Its standard output is delivered
// line by line on Lines; its standard error is kept for Stderr.
type Proc struct {
	cmd   *exec.Cmd
	lines chan string
	done  chan struct{} // closed once the output is drained
	err   error         // Wait's, valid after done

	mu     sync.Mutex
	stderr bytes.Buffer
}

// StartProc starts name with args and extra environment variables env
// ("K=V"), with stdin from the file at stdin ("" for none). The process is
// killed (SIGKILL) if ctx ends before it does: a test's deadline stops
// a process that hangs.
func StartProc(ctx context.Context, name string, args, env []string, stdin string) (*Proc, error) {
	p := &Proc{cmd: exec.CommandContext(ctx, name, args...), lines: make(chan string, 1024), done: make(chan struct{})}
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stderr = lockedWriter{p}
	if stdin != "" {
		f, err := os.Open(stdin)
		if err != nil {
			return nil, err
		}
		defer f.Close() // the child has its own descriptor once started
		p.cmd.Stdin = f
	}
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("testcluster: starting %s: %w", name, err)
	}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		close(p.lines)
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// Lines delivers the process's output lines; it is closed when the
// output ends. The caller must drain it for the process to go on.
func (p *Proc) Lines() <-chan string { return p.lines }

// Kill sends SIGKILL: the process dies wherever it is, without running
// any of its code. Wait then returns.
func (p *Proc) Kill() error { return p.cmd.Process.Kill() }

// Wait drains the output that is left and returns the process's exit
// error (nil for status 0).
func (p *Proc) Wait() error {
	for range p.lines {
	}
	<-p.done
	return p.err
}

// Stderr returns what the process wrote to standard error so far.
func (p *Proc) Stderr() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stderr.String()
}

type lockedWriter struct{ p *Proc }

func (w lockedWriter) Write(b []byte) (int, error) {
	w.p.mu.Lock()
	defer w.p.mu.Unlock()
	return w.p.stderr.Write(b)
}

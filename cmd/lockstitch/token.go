package main

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/lockstitch/lockstitch/server"
)

// cmdHashToken prints what an auth file's token_sha256 holds for a token
// read from stdin (never from the command line, which other users and
// shell histories see), or for a new random token with --new.
func cmdHashToken(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("hash-token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	gen := fs.Bool("new", false, "make a new random token (32 bytes, hex) and print it, then its SHA-256")
	if code, ok := parseFlags(fs, args, stdout, stderr); !ok {
		return code
	}
	if fs.NArg() > 0 {
		return usageError(stderr, "hash-token reads the token from stdin, not from arguments (they show in ps and shell histories)")
	}
	var tok string
	if *gen {
		b := make([]byte, 32)
		rand.Read(b)
		tok = hex.EncodeToString(b)
		fmt.Fprintf(stdout, "token        %s\n", tok)
		fmt.Fprintf(stdout, "token_sha256 %s\n", server.HashToken(tok))
		return 0
	}
	line, err := bufio.NewReader(stdin).ReadString('\n')
	if err != nil && err != io.EOF {
		return fail(stderr, fmt.Errorf("reading the token from stdin: %w", err))
	}
	if tok = strings.TrimSpace(line); tok == "" {
		return usageError(stderr, "no token on stdin")
	}
	fmt.Fprintln(stdout, server.HashToken(tok))
	return 0
}

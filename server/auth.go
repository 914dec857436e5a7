package server

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/lockstitch/lockstitch"
	"github.com/lockstitch/lockstitch/transport"
)

// An auth file (Config.AuthFile) names the principals that may use a
// node's client port and what each may do. In TOML:
//
//	[[principal]]
//	name = "orders"
//	token_sha256 = "9f86d0...": the SHA-256, in hex, of its bearer token
//	                           (lockstitch hash-token prints it)
//	certificate = "orders"     : or a verified client certificate whose
//	                           Subject CN or a DNS name is this (mutual TLS)
//	append = ["1-10", "42"]    : partitions it may append to
//	read   = ["*"]             : ... read, subscribe to, query, follow
//	                           with a cursor, or ask the status of
//	admin  = []                : ... create, delete, change the members of,
//	                           move the leader of, repair
//
// Partitions are ids, ranges FIRST-LAST, or "*" for all. Whatever is not
// granted is denied; a client that presents no known token or certificate
// is refused. Nodes call each other through the client port: give the
// token of Config.PeerTokenFile a principal with read and admin on "*".

// authFile is an auth file as decoded.
type authFile struct {
	Principal []struct {
		Name        string   `toml:"name"`
		TokenSHA256 string   `toml:"token_sha256"`
		Certificate string   `toml:"certificate"`
		Append      []string `toml:"append"`
		Read        []string `toml:"read"`
		Admin       []string `toml:"admin"`
	} `toml:"principal"`
}

// idSet is a set of partitions: ranges, or all.
type idSet struct {
	all    bool
	ranges [][2]lockstitch.PartitionID
}

func (s idSet) has(p lockstitch.PartitionID) bool {
	if s.all {
		return true
	}
	for _, r := range s.ranges {
		if r[0] <= p && p <= r[1] {
			return true
		}
	}
	return false
}

func parseIDSet(items []string) (idSet, error) {
	var s idSet
	for _, it := range items {
		it = strings.TrimSpace(it)
		if it == "*" {
			s.all = true
			continue
		}
		lo, hi, isRange := strings.Cut(it, "-")
		a, err1 := strconv.ParseUint(lo, 10, 64)
		b, err2 := a, error(nil)
		if isRange {
			b, err2 = strconv.ParseUint(hi, 10, 64)
		}
		if err1 != nil || err2 != nil || a == 0 || b < a {
			return idSet{}, fmt.Errorf("%q is not a partition id, a range FIRST-LAST or *", it)
		}
		s.ranges = append(s.ranges, [2]lockstitch.PartitionID{lockstitch.PartitionID(a), lockstitch.PartitionID(b)})
	}
	return s, nil
}

// principal is one principal of an auth file.
type principal struct {
	name   string
	token  []byte // SHA-256 of its token; nil: none
	cert   string
	grants [transport.ActionAdmin + 1]idSet
}

// Name implements transport.Principal.
func (p *principal) Name() string { return p.name }

// Allowed implements transport.Principal.
func (p *principal) Allowed(a transport.Action, id lockstitch.PartitionID) bool {
	return int(a) < len(p.grants) && p.grants[a].has(id)
}

// authPolicy authenticates a node's clients by an auth file.
type authPolicy struct {
	principals []*principal
}

var errUnknownCredentials = errors.New("no principal has these credentials")

// loadAuth reads and checks an auth file.
func loadAuth(path string) (*authPolicy, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var f authFile
	md, err := toml.Decode(string(b), &f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if un := md.Undecoded(); len(un) > 0 {
		return nil, fmt.Errorf("%s: unknown key %s", path, un[0])
	}
	var pol authPolicy
	names := map[string]bool{}
	for i, raw := range f.Principal {
		where := fmt.Sprintf("%s: principal %d (%q)", path, i+1, raw.Name)
		if raw.Name == "" {
			return nil, fmt.Errorf("%s: principal %d has no name", path, i+1)
		}
		if names[raw.Name] {
			return nil, fmt.Errorf("%s: two principals are named %q", path, raw.Name)
		}
		names[raw.Name] = true
		p := &principal{name: raw.Name, cert: raw.Certificate}
		if raw.TokenSHA256 != "" {
			sum, err := hex.DecodeString(raw.TokenSHA256)
			if err != nil || len(sum) != sha256.Size {
				return nil, fmt.Errorf("%s: token_sha256 must be %d hex digits (the SHA-256 of the token; lockstitch hash-token prints it)", where, 2*sha256.Size)
			}
			for _, q := range pol.principals {
				if subtle.ConstantTimeCompare(q.token, sum) == 1 {
					return nil, fmt.Errorf("%s: the same token as %q", where, q.name)
				}
			}
			p.token = sum
		}
		if p.cert != "" {
			for _, q := range pol.principals {
				if q.cert == p.cert {
					return nil, fmt.Errorf("%s: the same certificate name as %q", where, q.name)
				}
			}
		}
		if p.token == nil && p.cert == "" {
			return nil, fmt.Errorf("%s: neither token_sha256 nor certificate: nothing could authenticate it", where)
		}
		for a, items := range map[transport.Action][]string{transport.ActionAppend: raw.Append, transport.ActionRead: raw.Read, transport.ActionAdmin: raw.Admin} {
			if p.grants[a], err = parseIDSet(items); err != nil {
				return nil, fmt.Errorf("%s: %s: %w", where, a, err)
			}
		}
		pol.principals = append(pol.principals, p)
	}
	if len(pol.principals) == 0 {
		return nil, fmt.Errorf("%s: no principal: every client would be refused", path)
	}
	return &pol, nil
}

// byCertificate names a principal that authenticates by certificate
// only, or is "".
func (pol *authPolicy) byCertificate() string {
	for _, p := range pol.principals {
		if p.token == nil {
			return p.name
		}
	}
	return ""
}

// Authenticate implements transport.Authenticator: the principal whose
// token is the Hello's, else the first whose certificate name the
// client's verified certificate carries.
func (pol *authPolicy) Authenticate(_ context.Context, c transport.Credentials) (transport.Principal, error) {
	if len(c.Token) > 0 {
		sum := sha256.Sum256(c.Token)
		for _, p := range pol.principals {
			if p.token != nil && subtle.ConstantTimeCompare(p.token, sum[:]) == 1 {
				return p, nil
			}
		}
		return nil, fmt.Errorf("%w: unknown token", errUnknownCredentials)
	}
	if len(c.Certificates) > 0 {
		leaf := c.Certificates[0]
		for _, p := range pol.principals {
			if p.cert != "" && (leaf.Subject.CommonName == p.cert || slices.Contains(leaf.DNSNames, p.cert)) {
				return p, nil
			}
		}
		return nil, fmt.Errorf("%w: no principal for certificate %q", errUnknownCredentials, leaf.Subject.CommonName)
	}
	return nil, fmt.Errorf("%w: none presented (a token, or a client certificate)", errUnknownCredentials)
}

// HashToken returns what an auth file's token_sha256 holds for token.
func HashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

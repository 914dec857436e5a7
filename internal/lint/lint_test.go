package lint

import (
	"bytes"
	"encoding/json"
	"errors"
	"go/parser"
	"go/token"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// A layer is a directory of the module and the rule for what its packages may
// import. Packages of one layer may always import each other
// (replicator/plugins/kv imports replicator).
type layer struct {
	// dir is relative to the module root. "." is the root package alone;
	// any other dir covers the package there and every package below it.
	dir string
	// may lists the layers (by dir) whose packages this layer's packages may
	// import. Empty, and open false: no Lockstitch package at all.
	may []string
	// open layers may import any package of the module except those under
	// the directories in except.
	open   bool
	except []string
	// testsOnly: outside the layer, only test files may import it.
	testsOnly bool
}

// testHelpers is the layer that every layer's test files may import on top
// of what the layer's own rule allows, unless the rule excepts it.
const testHelpers = "internal/testutil"

// layers is the target layering of docs/architecture.md, lowest first. A
// package of the module that no layer covers fails TestLayering: a new
// top-level directory needs its row here (and its place in the docs).
var layers = []layer{
	{dir: "wal"},
	{dir: "metrics"},
	// TLS files and their reloading: the standard library only.
	{dir: "transport/tlsconf"},
	// The shared vocabulary: IDs, roles, error sentinels.
	{dir: ".", may: []string{"wal"}},
	// Op and result formats of the built-in plugins: clients and plugins
	// share them, so they link neither the replicator nor the wire.
	{dir: "ops", may: []string{".", "wal"}},
	{dir: "transport", may: []string{".", "wal", "metrics", "ops", "transport/tlsconf"}},
	// Not transport: replicator imports copy and must not reach the wire.
	{dir: "copy", may: []string{".", "wal", "metrics"}},
	{dir: "replicator", may: []string{".", "wal", "copy", "metrics", "ops"}},
	{dir: "server", may: []string{".", "replicator", "transport", "copy", "wal", "metrics", "ops", "transport/tlsconf"}},
	{dir: "cmd", open: true, except: []string{"bench", "examples"}},
	// Examples do what a user outside the module can do: no internal
	// package, in their tests either.
	{dir: "examples", open: true, except: []string{"cmd", "bench", "internal"}},
	{dir: "bench", open: true, except: []string{"cmd"}},
	{dir: "internal/testutil", may: []string{".", "wal", "metrics", "transport", "ops", "transport/tlsconf"}, testsOnly: true},
	// The fault-injection suite's history and checkers: pure, for tests.
	{dir: "internal/chaos", may: []string{".", "wal"}, testsOnly: true},
	{dir: "internal/lint"},
}

// thirdParty names modules that only some layers may import directly.
var thirdParty = []struct {
	prefix string // a module path; covers every package below it
	only   []string
}{
	{"github.com/lni/dragonboat", []string{"replicator", "bench"}},
	{"github.com/cockroachdb/pebble", []string{"replicator", "bench"}},
}

// under reports whether path (slash-separated) is dir or below it.
func under(path, dir string) bool {
	return path == dir || strings.HasPrefix(path, dir+"/")
}

// layerOf returns the layer that covers the package at rel (relative to the
// module root, "." for the root package), or nil.
func layerOf(rel string) *layer {
	var best *layer
	for i := range layers {
		l := &layers[i]
		if l.dir == "." {
			if rel == "." {
				return l
			}
			continue
		}
		if under(rel, l.dir) && (best == nil || len(l.dir) > len(best.dir)) {
			best = l
		}
	}
	return best
}

func layerName(dir string) string {
	if dir == "." {
		return "the module root package"
	}
	return dir + "/..."
}

// describe states l's rule, for failure messages.
func describe(l *layer) string {
	var b strings.Builder
	b.WriteString("rule: " + layerName(l.dir))
	switch {
	case l.open:
		b.WriteString(" may import any Lockstitch package")
		if len(l.except) > 0 {
			var ex []string
			for _, d := range l.except {
				ex = append(ex, d+"/...")
			}
			b.WriteString(" except " + strings.Join(ex, ", "))
		}
	case len(l.may) == 0 && l.dir == ".":
		b.WriteString(" may import no Lockstitch package")
	case len(l.may) == 0:
		b.WriteString(" may import no Lockstitch package outside " + l.dir + "/")
	default:
		var names []string
		if l.dir != "." {
			names = append(names, layerName(l.dir))
		}
		for _, d := range l.may {
			names = append(names, layerName(d))
		}
		b.WriteString(" may import only " + strings.Join(names, ", "))
	}
	if !excepts(l, testHelpers) && !slices.Contains(l.may, testHelpers) && l.dir != testHelpers {
		b.WriteString(" (its test files also " + layerName(testHelpers) + ")")
	}
	return b.String()
}

func excepts(l *layer, rel string) bool {
	for _, d := range l.except {
		if under(rel, d) {
			return true
		}
	}
	return false
}

// allowed reports whether a file of layer from, a test file if test, may
// import the module package at rel, and if not, why.
func allowed(from *layer, rel string, test bool) (bool, string) {
	to := layerOf(rel)
	if to == from {
		return true, ""
	}
	if to != nil && to.testsOnly && !test {
		return false, layerName(to.dir) + " may be imported only from test files; " + describe(from)
	}
	if test && to != nil && to.dir == testHelpers && !excepts(from, rel) {
		return true, ""
	}
	switch {
	case from.open && !excepts(from, rel):
		return true, ""
	case !from.open && to != nil && slices.Contains(from.may, to.dir):
		return true, ""
	}
	return false, describe(from)
}

// fileKind says which part of a package a file belongs to.
type fileKind int

const (
	nonTest fileKind = iota
	inTest           // a _test.go file of the package itself
	xTest            // a _test.go file of the external package P_test
)

// from says where an import of p's is, for failure messages.
func (p *pkg) from(k fileKind) string {
	switch k {
	case inTest:
		return "a test file (package " + p.name + ")"
	case xTest:
		return "an external test file (package " + p.name + "_test)"
	}
	return "a non-test file"
}

// pkg is one package of the module, with the imports of all its files,
// whatever their build constraints.
type pkg struct {
	path    string // import path
	rel     string // relative to the module root, "." for the root package
	name    string // package name
	imports map[fileKind]map[string][]string
}

type module struct {
	path, dir string
	pkgs      []*pkg
	errs      []string // what go list could not load
}

func goCmd(t *testing.T, dir string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command("go", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOWORK=off")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, stderr.Bytes())
	}
	return out
}

// loadModule lists every package of the module that holds the working
// directory (as `go test ./...` would test them) and reads the imports of
// each of their Go files, including those the current build constraints
// leave out (other systems, !race) and test files.
func loadModule(t *testing.T) *module {
	t.Helper()
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("the go command is not on PATH")
	}
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	var mod struct{ Path, Dir string }
	if err := json.Unmarshal(goCmd(t, wd, "list", "-m", "-json"), &mod); err != nil || mod.Path == "" || mod.Dir == "" {
		t.Fatalf("go list -m -json in %s: no main module (%v)", wd, err)
	}
	m := module{path: mod.Path, dir: mod.Dir}
	out := goCmd(t, m.dir, "list", "-e",
		"-json=ImportPath,Dir,Name,GoFiles,CgoFiles,TestGoFiles,XTestGoFiles,IgnoredGoFiles,InvalidGoFiles,Error",
		"./...")
	fset := token.NewFileSet()
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var lp struct {
			ImportPath, Dir, Name                        string
			GoFiles, CgoFiles, TestGoFiles               []string
			XTestGoFiles, IgnoredGoFiles, InvalidGoFiles []string
			Error                                        *struct{ Err string }
		}
		if err := dec.Decode(&lp); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("go list -json ./...: %v", err)
		}
		if lp.Error != nil {
			m.errs = append(m.errs, lp.ImportPath+": "+lp.Error.Err)
		}
		p := &pkg{path: lp.ImportPath, rel: m.rel(lp.ImportPath), name: lp.Name, imports: map[fileKind]map[string][]string{}}
		var files []string
		for _, fs := range [][]string{lp.GoFiles, lp.CgoFiles, lp.TestGoFiles, lp.XTestGoFiles, lp.IgnoredGoFiles, lp.InvalidGoFiles} {
			files = append(files, fs...)
		}
		slices.Sort(files)
		files = slices.Compact(files)
		for _, name := range files {
			if !strings.HasSuffix(name, ".go") {
				continue
			}
			f, err := parser.ParseFile(fset, filepath.Join(lp.Dir, name), nil, parser.ImportsOnly)
			if err != nil {
				m.errs = append(m.errs, err.Error())
				continue
			}
			kind := nonTest
			if strings.HasSuffix(name, "_test.go") {
				kind = inTest
				if strings.HasSuffix(f.Name.Name, "_test") {
					kind = xTest
				}
			}
			if p.imports[kind] == nil {
				p.imports[kind] = map[string][]string{}
			}
			file := filepath.ToSlash(filepath.Join(p.rel, name))
			for _, spec := range f.Imports {
				imp, err := strconv.Unquote(spec.Path.Value)
				if err != nil || imp == "C" {
					continue
				}
				if !slices.Contains(p.imports[kind][imp], file) {
					p.imports[kind][imp] = append(p.imports[kind][imp], file)
				}
			}
		}
		m.pkgs = append(m.pkgs, p)
	}
	if len(m.pkgs) == 0 {
		t.Fatalf("go list ./... in %s found no packages", m.dir)
	}
	return &m
}

// rel returns the module package path relative to the module root ("." for
// the root package), or "" for a path outside the module.
func (m *module) rel(path string) string {
	switch {
	case path == m.path:
		return "."
	case strings.HasPrefix(path, m.path+"/"):
		return strings.TrimPrefix(path, m.path+"/")
	}
	return ""
}

// TestLayering checks every import of every package of the module, tests
// included, against the layers table, and then that no package whose layer
// lists what it may import reaches anything else through its dependencies.
func TestLayering(t *testing.T) {
	m := loadModule(t)
	for _, e := range m.errs {
		t.Errorf("go list or the parser could not load a package; fix the build first:\n\t%s", e)
	}

	t.Run("imports", func(t *testing.T) {
		listed := map[string]bool{}
		for _, p := range m.pkgs {
			listed[p.path] = true
		}
		for _, p := range m.pkgs {
			from := layerOf(p.rel)
			if from == nil {
				t.Errorf("%s: no layer covers this package; add its directory %s/ to the layers table in internal/lint/lint_test.go (and to docs/architecture.md)", p.path, p.rel)
				continue
			}
			for _, kind := range []fileKind{nonTest, inTest, xTest} {
				imps := p.imports[kind]
				for _, imp := range slices.Sorted(maps.Keys(imps)) {
					files := strings.Join(imps[imp], ", ")
					if rel := m.rel(imp); rel != "" {
						if !listed[imp] {
							t.Errorf("%s: %s imports %s from %s, which is not a package of the module (moved or deleted?); the build is broken",
								files, p.path, imp, p.from(kind))
						}
						if ok, why := allowed(from, rel, kind != nonTest); !ok {
							t.Errorf("%s: %s imports %s from %s; %s", files, p.path, imp, p.from(kind), why)
						}
						continue
					}
					for _, tp := range thirdParty {
						if under(imp, tp.prefix) && !slices.Contains(tp.only, from.dir) {
							t.Errorf("%s: %s imports %s from %s; rule: only %s may import %s/...",
								files, p.path, imp, p.from(kind), strings.Join(tp.only, "/..., ")+"/...", tp.prefix)
						}
					}
				}
			}
		}
	})

	// What `go list -deps` shows: the module packages each package reaches
	// through the imports of its non-test files. With every direct import
	// allowed and the table closed (TestLayerTable) this cannot fail on its
	// own; it names the chain when it does.
	t.Run("deps", func(t *testing.T) {
		graph := map[string][]string{}
		for _, p := range m.pkgs {
			for imp := range p.imports[nonTest] {
				if m.rel(imp) != "" {
					graph[p.path] = append(graph[p.path], imp)
				}
			}
			slices.Sort(graph[p.path])
		}
		for _, p := range m.pkgs {
			from := layerOf(p.rel)
			if from == nil || from.open {
				continue
			}
			// Breadth first, so each chain reported is a shortest one.
			via := map[string]string{p.path: ""}
			queue := []string{p.path}
			for len(queue) > 0 {
				cur := queue[0]
				queue = queue[1:]
				for _, next := range graph[cur] {
					if _, seen := via[next]; seen {
						continue
					}
					via[next] = cur
					queue = append(queue, next)
					to := layerOf(m.rel(next))
					if to == from || (to != nil && slices.Contains(from.may, to.dir)) {
						continue
					}
					chain := []string{m.rel(next)}
					for c := cur; c != ""; c = via[c] {
						chain = append(chain, m.rel(c))
					}
					slices.Reverse(chain)
					t.Errorf("%s depends on %s through %s (non-test imports); %s",
						p.path, next, strings.Join(chain, " -> "), describe(from))
				}
			}
		}
	})
}

// TestLayerTable checks the table itself: every named layer exists, only a
// layer's own packages import cmd and bench, and a layer that lists what it
// may import lists what those layers may import too (so copy cannot take
// transport while replicator, which imports copy, may not).
func TestLayerTable(t *testing.T) {
	byDir := map[string]*layer{}
	for i := range layers {
		l := &layers[i]
		if byDir[l.dir] != nil {
			t.Errorf("layer %s is in the table twice", l.dir)
		}
		byDir[l.dir] = l
	}
	for i := range layers {
		l := &layers[i]
		for _, d := range append(slices.Clone(l.may), l.except...) {
			if byDir[d] == nil && d != "internal" {
				t.Errorf("layer %s names %s, which is not a layer", l.dir, d)
			}
		}
		for _, top := range []string{"cmd", "bench"} {
			if l.dir == top {
				continue
			}
			if ok, _ := allowed(l, top, true); ok {
				t.Errorf("layer %s may import %s/...; nothing but %s/... may", l.dir, top, top)
			}
		}
		if l.open {
			continue
		}
		for _, d := range l.may {
			dep := byDir[d]
			if dep == nil {
				continue
			}
			if dep.open {
				t.Errorf("layer %s may import %s, which may import anything", l.dir, d)
				continue
			}
			for _, dd := range dep.may {
				if dd != l.dir && !slices.Contains(l.may, dd) {
					t.Errorf("layer %s may import %s, which may import %s; %s may not, so it would reach %s through %s",
						l.dir, d, dd, l.dir, dd, d)
				}
			}
		}
	}
}

// TestAllowed pins the rules for packages that do not all exist yet, so a
// change to the table that loosens one shows here.
func TestAllowed(t *testing.T) {
	for _, c := range []struct {
		from, to string
		test     bool
		want     bool
	}{
		{"wal", "metrics", false, false},
		{"wal", "internal/testutil/faultfs", true, true},
		{"metrics", "wal", false, false},
		{".", "wal", false, true},
		{".", "metrics", false, false},
		{"transport", ".", false, true},
		{"transport", "copy", false, false},
		{"copy", "transport", false, false},
		{"copy", "wal", false, true},
		{"replicator", "transport", false, false},
		{"replicator", "transport", true, false},
		{"replicator", "server", false, false},
		{"replicator", "copy", false, true},
		{"replicator/plugins/kv", "replicator", false, true},
		{"replicator", "internal/testutil", false, false},
		{"replicator", "internal/testutil", true, true},
		{"server", "transport", false, true},
		{"server", "replicator", false, true},
		{"server", "cmd/lockstitch", false, false},
		{"server", "examples/kv", false, false},
		{"cmd/lockstitch", "server", false, true},
		{"cmd/lockstitch", "internal/node", false, true},
		{"cmd/lockstitch", "internal/testutil", false, false},
		{"cmd/lockstitch", "internal/testutil", true, true},
		{"cmd/lockstitch", "bench/walfio", false, false},
		{"cmd/lockstitch", "examples/kv", false, false},
		{"examples/kv", "server", false, true},
		{"examples/kv", "internal/testutil", true, false},
		{"examples/kv", "internal/node", false, false},
		{"examples/kv", "cmd/lockstitch", false, false},
		{"bench/walfio", "replicator", false, true},
		{"bench/walfio", "cmd/lockstitch", false, false},
		{"internal/testutil/faultfs", "wal", false, true},
		{"internal/testutil/faultfs", "internal/testutil", false, true},
		{"internal/testutil", "transport", false, true},
		{"internal/testutil", "replicator", false, false},
		{"internal/lint", "wal", true, false},
		{"internal/node", "wal", false, false},
	} {
		from := layerOf(c.from)
		if from == nil {
			if c.want {
				t.Errorf("%s: no layer covers it", c.from)
			}
			continue
		}
		if got, why := allowed(from, c.to, c.test); got != c.want {
			t.Errorf("%s imports %s (test file: %v): allowed %v, want %v (%s)", c.from, c.to, c.test, got, c.want, why)
		}
	}
}

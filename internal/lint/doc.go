// Package lint holds repository-wide checks that run as tests, so
// `go test ./...` (and with it scripts/test) runs them beside the rest.
//
// TestLayering fails when an import breaks the package layering of
// docs/architecture.md; its table of layers is the one statement of which
// package may import which. The package has no code of its own.
package lint

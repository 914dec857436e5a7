//go:build !race

package replicator_test

// raceEnabled scales down the tests that are slow under the race
// detector.
const raceEnabled = false

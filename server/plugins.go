package server

import (
	"github.com/lockstitch/lockstitch/replicator"
	"github.com/lockstitch/lockstitch/replicator/kv"
)

// DefaultPlugins returns the built-in plugins a node offers unless its
// configuration says otherwise, by name: log (the stream is the state)
// and kv (a dictionary on pebble, see package replicator/kv).
func DefaultPlugins() map[string]replicator.PluginFactory {
	return map[string]replicator.PluginFactory{
		replicator.LogPluginName: replicator.NewLogPlugin,
		kv.Name:                  kv.New,
	}
}

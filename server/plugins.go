package server

import (
	"github.com/lockstitch/lockstitch/replicator"
	"github.com/lockstitch/lockstitch/replicator/kv"
	"github.com/lockstitch/lockstitch/replicator/queue"
)

// Plugins returns the built-in plugins a node offers by default, by name
// (DefaultConfig's Replicator.Plugins, and what `lockstitch serve` and
// `lockstitch dev` offer): log (replicator.NewLogPlugin: the stream is the
// state), kv (a dictionary on pebble, replicator/kv) and queue
// (replicator/queue). A program embedding a node adds its own to the map.
func Plugins() map[string]replicator.PluginFactory {
	return map[string]replicator.PluginFactory{
		replicator.LogPluginName: replicator.NewLogPlugin,
		kv.Name:                  kv.New,
		queue.PluginName:         queue.New,
	}
}

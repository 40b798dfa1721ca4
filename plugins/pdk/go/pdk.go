// Package pdk writes PRX tool plugins in Go: standard Go (1.24 or later)
// builds a wasip1 reactor with //go:wasmexport, and `prx-plugin build`
// makes it a component (wit-component and the WASI preview-1 adapter).
// The canonical ABI is written by hand in this package, as PRX's guide
// says Go plugins do.
//
//	func init() {
//		pdk.Tool("hash", "Hashes text", `{"type":"object"}`, func(args string) (string, error) {
//			...
//		})
//	}
//
//	func main() {}
//
// The host functions (Log, ConfigGet, KvGet, KvSet, KvIncrement) call the
// host inside a component and a fake host in `go test`.
package pdk

import "fmt"

// Levels of Log, in the order of the WIT enum.
type Level uint8

const (
	Trace Level = iota
	Debug
	Info
	Warn
	Error
)

// HostError is the host's refusal of a call (a permission, a quota).
type HostError struct{ Message string }

func (e *HostError) Error() string { return e.Message }

type tool struct {
	name, description, schema string
	run                       func(args string) (string, error)
}

var registered *tool

// Tool registers the plugin's tool: its name, description, the JSON
// Schema of its arguments, and the function called with the arguments'
// JSON text. An error is the caller's error; a panic too (the worker
// lives on). Call it from init(): the component's start runs init, not main.
func Tool(name, description, schema string, run func(args string) (string, error)) {
	if registered != nil {
		panic(fmt.Sprintf("a plugin has one tool: %s and %s are both registered", registered.name, name))
	}
	registered = &tool{name, description, schema, run}
}

// call runs the tool, turning a panic into an error.
func call(args string) (out string, err error) {
	if registered == nil {
		return "", fmt.Errorf("the plugin registers no tool: call pdk.Tool from init()")
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	return registered.run(args)
}

//! The template of `prx-plugin new --lang go`: a tool (the world the Go
//! SDK covers), its `go test` tests against the SDK's fake host, go.mod,
//! plugin.toml.

use std::path::Path;

use prx_supervisor::manifest::CapabilityType;

use crate::scaffold::{fill, manifest};

pub fn project(name: &str) -> Vec<(&'static str, String)> {
    let fill = |t: &str| fill(t, name, Path::new(""));
    vec![
        ("plugin.toml", fill(&manifest(CapabilityType::Tool))),
        ("go.mod", fill(GO_MOD)),
        ("main.go", fill(MAIN)),
        ("main_test.go", fill(MAIN_TEST)),
        ("README.md", fill(README)),
        (
            ".gitignore",
            "/build/\n/plugin.wasm\n/*.prxplugin\n".to_owned(),
        ),
    ]
}

const GO_MOD: &str = r##"module @NAME@

go 1.24
"##;

const README: &str = r##"# @NAME@

A PRX tool plugin in Go (standard Go 1.24 or later, and the Go SDK
`prx.local/pdk`, built into prx-plugin).

    prx-plugin build --release   # go build (wasip1 reactor) -> plugin.wasm (wit-component), validated
    prx-plugin test              # go test (a fake host), then one call in a real supervisor
    prx-plugin pack              # @NAME@-0.1.0.prxplugin, with checksums
    prx-plugin install @NAME@-0.1.0.prxplugin --plugins /path/to/plugins

The tool is registered in init() (the component's start runs init, not
main). The Go runtime is part of the component: keep `max_memory_mb` at
16 or more.
"##;

const MAIN: &str = r##"// A tool: {"name": "ada"} -> "Hello, ada! (greeting 3)", counting the
// greetings in the plugin's kv store.
package main

import (
	"encoding/json"
	"fmt"

	"prx.local/pdk"
)

// Greet is the tool: the arguments' JSON in, the answer out.
func Greet(args string) (string, error) {
	var in struct {
		Name *string `json:"name"`
	}
	if err := json.Unmarshal([]byte(args), &in); err != nil {
		return "", fmt.Errorf("name must be a string: %v", err)
	}
	name := "world"
	if in.Name != nil {
		name = *in.Name
	}
	count, err := pdk.KvIncrement("greetings", 1)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("Hello, %s! (greeting %d)", name, count), nil
}

func init() {
	pdk.Tool("@NAME@", "Greets someone and counts the greetings", `{"type":"object","properties":{"name":{"type":"string"}}}`, Greet)
}

func main() {}
"##;

const MAIN_TEST: &str = r##"package main

import (
	"testing"

	"prx.local/pdk"
)

func TestGreetsAndCounts(t *testing.T) {
	pdk.Fake.Reset()
	if got, err := pdk.Call(`{"name":"ada"}`); err != nil || got != "Hello, ada! (greeting 1)" {
		t.Fatalf("%q %v", got, err)
	}
	if got, _ := pdk.Call(`{}`); got != "Hello, world! (greeting 2)" {
		t.Fatalf("%q", got)
	}
	if string(pdk.Fake.Kv["greetings"]) != "2" {
		t.Fatalf("counted %q", pdk.Fake.Kv["greetings"])
	}
	if _, err := pdk.Call(`{"name":3}`); err == nil {
		t.Fatal("a number accepted as a name")
	}
}
"##;

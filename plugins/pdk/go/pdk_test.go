package pdk

import (
	"errors"
	"testing"
)

// The fake host and the tool's call, as a plugin's own tests see them.
func TestFakeHostAndCall(t *testing.T) {
	Fake.Reset()
	registered = nil
	if _, err := Call("{}"); err == nil {
		t.Fatal("a call without a tool answered")
	}
	Tool("t", "a test tool", `{}`, func(args string) (string, error) {
		switch args {
		case "panic":
			panic("asked to")
		case "refuse":
			return "", errors.New("refused")
		}
		n, err := KvIncrement("calls", 1)
		if err != nil {
			return "", err
		}
		Log(Info, "called")
		v, _ := ConfigGet("greeting")
		return v + " " + string(rune('0'+n)), nil
	})
	Fake.Config["greeting"] = "hi"
	if got, err := Call("{}"); err != nil || got != "hi 1" {
		t.Fatalf("%q %v", got, err)
	}
	if _, err := Call("panic"); err == nil || err.Error() != "panic: asked to" {
		t.Fatalf("a panic: %v", err)
	}
	if _, err := Call("refuse"); err == nil || err.Error() != "refused" {
		t.Fatalf("an error: %v", err)
	}
	if len(Fake.Logs) != 1 || Fake.Logs[0] != "info: called" {
		t.Fatalf("logs %q", Fake.Logs)
	}
	if err := KvSet("calls", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := KvIncrement("calls", 1); err == nil {
		t.Fatal("incremented a value that is not a number")
	}
	if v, ok := KvGet("calls"); !ok || string(v) != "x" {
		t.Fatalf("kv %q %v", v, ok)
	}
	defer func() {
		if recover() == nil {
			t.Fatal("a second tool registered")
		}
	}()
	Tool("u", "", `{}`, nil)
}

//go:build !wasip1

// The host in memory, for a plugin's own tests under `go test`: the
// same functions, with kv and config in maps and the log recorded.

package pdk

import (
	"fmt"
	"strconv"
)

// Fake is the host `go test` sees. Reset it between tests.
var Fake = NewFakeHost()

// FakeHost holds what the fake host keeps.
type FakeHost struct {
	Config map[string]string
	Kv     map[string][]byte
	Logs   []string
}

func NewFakeHost() *FakeHost {
	return &FakeHost{Config: map[string]string{}, Kv: map[string][]byte{}}
}

// Reset empties the fake host.
func (f *FakeHost) Reset() { *f = *NewFakeHost() }

var levels = [...]string{"trace", "debug", "info", "warn", "error"}

func Log(level Level, message string) {
	Fake.Logs = append(Fake.Logs, levels[level]+": "+message)
}

func ConfigGet(key string) (string, bool) {
	v, ok := Fake.Config[key]
	return v, ok
}

func KvGet(key string) ([]byte, bool) {
	v, ok := Fake.Kv[key]
	return v, ok
}

func KvSet(key string, value []byte) error {
	Fake.Kv[key] = append([]byte(nil), value...)
	return nil
}

func KvIncrement(key string, delta int64) (int64, error) {
	current := int64(0)
	if v, ok := Fake.Kv[key]; ok {
		n, err := strconv.ParseInt(string(v), 10, 64)
		if err != nil {
			return 0, &HostError{fmt.Sprintf("the value at %q is not a number", key)}
		}
		current = n
	}
	current += delta
	Fake.Kv[key] = []byte(strconv.FormatInt(current, 10))
	return current, nil
}

// Call runs the registered tool as the host would (a panic is an error).
func Call(args string) (string, error) { return call(args) }

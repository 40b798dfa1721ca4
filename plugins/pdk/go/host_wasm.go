//go:build wasip1

// The host functions, imported from the prx:host interfaces.

package pdk

import "unsafe"

//go:wasmimport prx:host/log@0.1.0 log
func hostLog(level uint32, ptr, n uint32)

//go:wasmimport prx:host/config@0.1.0 get
func hostConfigGet(ptr, n uint32, ret uint32)

//go:wasmimport prx:host/kv@0.1.0 get
func hostKvGet(ptr, n uint32, ret uint32)

//go:wasmimport prx:host/kv@0.1.0 set
func hostKvSet(kp, kn, vp, vn uint32, ret uint32)

//go:wasmimport prx:host/kv-atomic@0.1.0 increment
func hostKvIncrement(ptr, n uint32, delta int64, ret uint32)

// An import's return area: 16 bytes, aligned to 8.
var importRet [2]uint64

func importArea() uintptr { return uintptr(unsafe.Pointer(&importRet[0])) }

func get8(at uintptr) uint8   { return *(*uint8)(unsafe.Pointer(at)) }
func get32(at uintptr) uint32 { return *(*uint32)(unsafe.Pointer(at)) }
func get64(at uintptr) int64  { return *(*int64)(unsafe.Pointer(at)) }

// giveBack returns the arena to where it was before a host call, once its
// answer has been copied out.
func giveBack(mark uintptr) { hostNext = mark }

// Log writes a line to the host's log, tagged with the plugin's name.
func Log(level Level, message string) {
	if level > Error {
		level = Error
	}
	p, n := lower(message)
	hostLog(uint32(level), p, n)
}

// ConfigGet is the manifest's [config] value of key.
func ConfigGet(key string) (string, bool) {
	defer giveBack(hostNext)
	p, n := lower(key)
	a := importArea()
	hostConfigGet(p, n, uint32(a))
	if get8(a) == 0 {
		return "", false
	}
	return lift(get32(a+4), get32(a+8)), true
}

// KvGet is the value at key in the plugin's kv store (permission kv).
func KvGet(key string) ([]byte, bool) {
	defer giveBack(hostNext)
	p, n := lower(key)
	a := importArea()
	hostKvGet(p, n, uint32(a))
	if get8(a) == 0 {
		return nil, false
	}
	return []byte(lift(get32(a+4), get32(a+8))), true
}

// KvSet stores value at key, once it is durable (permission kv).
func KvSet(key string, value []byte) error {
	defer giveBack(hostNext)
	kp, kn := lower(key)
	vp, vn := lowerBytes(append([]byte(nil), value...))
	a := importArea()
	hostKvSet(kp, kn, vp, vn, uint32(a))
	if get8(a) != 0 {
		return &HostError{lift(get32(a+4), get32(a+8))}
	}
	return nil
}

// KvIncrement adds delta to the counter at key in one step of the host
// (a missing key counts as 0) and returns the new value (permission kv).
func KvIncrement(key string, delta int64) (int64, error) {
	defer giveBack(hostNext)
	p, n := lower(key)
	a := importArea()
	hostKvIncrement(p, n, delta, uint32(a))
	if get8(a) != 0 {
		return 0, &HostError{lift(get32(a+8), get32(a+12))}
	}
	return get64(a + 8), nil
}

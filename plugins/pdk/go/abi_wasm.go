//go:build wasip1

// The canonical ABI, by hand: the tool world's exports, the allocator the
// host writes arguments and answers through, and lifting and lowering of
// strings.

package pdk

import (
	"strings"
	"unsafe"
)

// Strings the plugin hands the host (answers, host-call arguments), kept
// from the garbage collector until the host has read them.
var live = map[uintptr][]byte{}

// What the host writes into the plugin: a call's arguments and the answers
// of host calls. No import may be called while the host allocates, and Go
// code that allocates may call into the WASI adapter (the scheduler, the
// collector), so this allocator only moves an offset through a static
// arena: no Go allocation, no runtime call. What the host wrote is copied
// out at once (lift); the arena starts over at each call, and each host
// call gives back what its answer took.
var hostArena [4 << 20]byte

var hostNext uintptr

// Where the arena is full: an address past any memory, so the host traps
// ("realloc return: beyond end of memory") instead of writing anywhere.
const arenaFull = 0xffff_fff0

// The allocator the host writes arguments (cabi_export_realloc) and
// answers of host calls (cabi_import_realloc) through. Not named
// cabi_realloc: the WASI adapter calls that one for its own state from
// inside the Go runtime's start, where Go code cannot run yet, and
// without it wit-component gives the adapter memory of its own.
//
//go:wasmexport cabi_export_realloc
//go:nosplit
func cabiExportRealloc(old, oldSize, align, newSize uint32) uint32 {
	return realloc(old, oldSize, align, newSize)
}

//go:wasmexport cabi_import_realloc
//go:nosplit
func cabiImportRealloc(old, oldSize, align, newSize uint32) uint32 {
	return realloc(old, oldSize, align, newSize)
}

//go:nosplit
func realloc(old, oldSize, align, newSize uint32) uint32 {
	base := uintptr(unsafe.Pointer(&hostArena))
	if align == 0 {
		align = 1
	}
	at := (base + hostNext + uintptr(align) - 1) &^ (uintptr(align) - 1)
	end := at + uintptr(newSize)
	if end > base+uintptr(len(hostArena)) {
		return arenaFull
	}
	// A reallocation (the host shrinking a string it transcoded) keeps
	// the bytes: copied by hand, as a runtime call could not be made here.
	for i := uintptr(0); old != 0 && i < uintptr(oldSize) && i < uintptr(newSize); i++ {
		*(*byte)(unsafe.Pointer(at + i)) = *(*byte)(unsafe.Pointer(uintptr(old) + i))
	}
	hostNext = end - base
	return uint32(at)
}

// lift copies the string at (ptr, len) out of linear memory.
func lift(ptr, n uint32) string {
	if n == 0 {
		return ""
	}
	return string(unsafe.Slice((*byte)(unsafe.Pointer(uintptr(ptr))), n))
}

// lower puts s where the host can read it until the call is over. A WIT
// string is UTF-8: bytes that are not (Go strings may hold any) become
// U+FFFD, where the host would otherwise refuse the whole answer.
func lower(s string) (uint32, uint32) {
	return lowerBytes([]byte(strings.ToValidUTF8(s, "\uFFFD")))
}

// lowerBytes puts bytes (a list<u8>) where the host can read them.
func lowerBytes(buf []byte) (uint32, uint32) {
	if len(buf) == 0 {
		return 1, 0
	}
	at := uintptr(unsafe.Pointer(&buf[0]))
	live[at] = buf
	return uint32(at), uint32(len(buf))
}

// release forgets every kept buffer (after the host has read the answer).
func release() {
	clear(live)
}

// A return area: 24 bytes, aligned to 8.
var ret [3]uint64

func area() uintptr { return uintptr(unsafe.Pointer(&ret[0])) }

func put32(at uintptr, v uint32) { *(*uint32)(unsafe.Pointer(at)) = v }
func put8(at uintptr, v uint8)   { *(*uint8)(unsafe.Pointer(at)) = v }

//go:wasmexport prx:plugin/tool-exports@0.1.0#get-spec
func getSpec() uint32 {
	hostNext = 0
	release()
	if registered == nil {
		panic("the plugin registers no tool: call pdk.Tool from init()")
	}
	a := area()
	for i, s := range []string{registered.name, registered.description, registered.schema} {
		p, n := lower(s)
		put32(a+uintptr(8*i), p)
		put32(a+uintptr(8*i+4), n)
	}
	return uint32(a)
}

//go:wasmexport prx:plugin/tool-exports@0.1.0#execute
func execute(ptr, n uint32) uint32 {
	args := lift(ptr, n)
	hostNext = 0
	release()
	out, err := call(args)
	a := area()
	ret = [3]uint64{}
	if err != nil {
		// plugin-result { success: false, output: "", error: some(text) }
		p, l := lower(err.Error())
		put8(a, 0)
		put32(a+4, 1)
		put8(a+12, 1)
		put32(a+16, p)
		put32(a+20, l)
	} else {
		p, l := lower(out)
		put8(a, 1)
		put32(a+4, p)
		put32(a+8, l)
		put8(a+12, 0)
	}
	return uint32(a)
}

// No post-return functions: the canonical ABI lets no import be called
// from one, and Go code may call into the WASI adapter at any point (the
// scheduler, the collector). What an answer kept alive is let go at the
// start of the next call instead (release).

// The WASI adapter's memory: its state and its stack, in Go's static
// data, where the Go heap never reaches. The adapter asks for them during
// the Go runtime's own start, before any Go code can run, so prx-plugin
// build gives it an allocator of its own over this array, found by the
// marker it starts with (cabi_realloc_adapter).
var adapterArena = [256 << 10]byte{'p', 'r', 'x', ':', 'w', 'a', 's', 'i', '-', 'a', 'd', 'a', 'p', 't', 'e', 'r', '-', 'a', 'r', 'e', 'n', 'a', ':'}

// Keeps the arena in the binary: the linker drops what nothing reaches.
//
//go:wasmexport prx_adapter_arena
func adapterArenaAt() uint32 { return uint32(uintptr(unsafe.Pointer(&adapterArena[0]))) }

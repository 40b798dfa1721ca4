//go:build wasip1

// The canonical ABI, by hand: the tool world's exports, the allocator the
// host writes arguments and answers through, and lifting and lowering of
// strings.

package pdk

import (
	"strings"
	"unsafe"
)

// Buffers the host allocated (arguments, answers) or the plugin returned,
// kept from the garbage collector until the call is over.
var live = map[uintptr][]byte{}

// The allocator the host writes arguments (cabi_export_realloc) and
// answers of host calls (cabi_import_realloc) through. Not named
// cabi_realloc: the WASI adapter calls that one for its own state from
// inside the Go runtime's start, where Go code cannot run yet, and
// without it wit-component gives the adapter memory of its own.
//
//go:wasmexport cabi_export_realloc
func cabiExportRealloc(old, oldSize, align, newSize uint32) uint32 {
	return realloc(old, oldSize, align, newSize)
}

//go:wasmexport cabi_import_realloc
func cabiImportRealloc(old, oldSize, align, newSize uint32) uint32 {
	return realloc(old, oldSize, align, newSize)
}

func realloc(old, oldSize, align, newSize uint32) uint32 {
	if newSize == 0 {
		return align
	}
	buf := make([]byte, newSize+align)
	base := uintptr(unsafe.Pointer(&buf[0]))
	at := (base + uintptr(align) - 1) &^ (uintptr(align) - 1)
	if old != 0 {
		copy(buf[at-base:], unsafe.Slice((*byte)(unsafe.Pointer(uintptr(old))), oldSize))
	}
	live[at] = buf
	return uint32(at)
}

// lift copies the string at (ptr, len) out of linear memory and lets
// the buffer the host wrote it into go.
func lift(ptr, n uint32) string {
	if n == 0 {
		return ""
	}
	s := string(unsafe.Slice((*byte)(unsafe.Pointer(uintptr(ptr))), n))
	delete(live, uintptr(ptr))
	return s
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

//go:wasmexport cabi_post_prx:plugin/tool-exports@0.1.0#execute
func postExecute(uint32) { release() }

//go:wasmexport cabi_post_prx:plugin/tool-exports@0.1.0#get-spec
func postGetSpec(uint32) { release() }

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

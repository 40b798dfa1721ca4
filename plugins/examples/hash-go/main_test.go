package main

import (
	"testing"

	"prx.local/pdk"
)

func TestDigests(t *testing.T) {
	pdk.Fake.Reset()
	got, err := pdk.Call(`{"text":"abc"}`)
	if err != nil || got != "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" {
		t.Fatalf("sha256: %q %v", got, err)
	}
	pdk.Fake.Config["algorithm"] = "md5"
	if got, _ := pdk.Call(`{"text":"abc"}`); got != "md5:900150983cd24fb0d6963f7d28e17f72" {
		t.Fatalf("the configured default: %q", got)
	}
	if string(pdk.Fake.Kv["hashed"]) != "2" {
		t.Fatalf("counted %q", pdk.Fake.Kv["hashed"])
	}
}

func TestRefusals(t *testing.T) {
	pdk.Fake.Reset()
	if _, err := pdk.Call(`{"text":"x","algorithm":"crc"}`); err == nil || err.Error() != `unknown algorithm "crc": use sha256, sha1 or md5` {
		t.Fatalf("unknown algorithm: %v", err)
	}
	if _, err := pdk.Call(`{}`); err == nil {
		t.Fatal("no text accepted")
	}
}

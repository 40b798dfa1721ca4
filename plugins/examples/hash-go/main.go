// hash-go: a tool in Go. {"text": "...", "algorithm": "sha256"} -> the
// hex digest (sha256, sha1 or md5, the operator's default in [config]),
// counting the texts hashed in kv.
package main

import (
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"strconv"

	"prx.local/pdk"
)

const schema = `{"type":"object","properties":{"text":{"type":"string"},"algorithm":{"type":"string","enum":["sha256","sha1","md5"]}},"required":["text"]}`

var algorithms = map[string]func() hash.Hash{"sha256": sha256.New, "sha1": sha1.New, "md5": md5.New}

// Digest is the tool: the JSON arguments in, the answer out.
func Digest(args string) (string, error) {
	var in struct {
		Text      *string `json:"text"`
		Algorithm string  `json:"algorithm"`
	}
	if err := json.Unmarshal([]byte(args), &in); err != nil {
		return "", fmt.Errorf("the arguments are not JSON: %v", err)
	}
	if in.Text == nil {
		return "", fmt.Errorf(`"text" must be a string`)
	}
	name := in.Algorithm
	if name == "" {
		name, _ = pdk.ConfigGet("algorithm")
	}
	if name == "" {
		name = "sha256"
	}
	algorithm, ok := algorithms[name]
	if !ok {
		return "", fmt.Errorf("unknown algorithm %q: use sha256, sha1 or md5", name)
	}
	h := algorithm()
	h.Write([]byte(*in.Text))
	count, err := pdk.KvIncrement("hashed", 1)
	if err != nil {
		return "", err
	}
	pdk.Log(pdk.Debug, "text "+strconv.FormatInt(count, 10)+" hashed with "+name)
	return name + ":" + hex.EncodeToString(h.Sum(nil)), nil
}

func init() {
	pdk.Tool("hash", "Hashes a text (sha256, sha1 or md5)", schema, Digest)
}

func main() {}

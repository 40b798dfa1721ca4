// The tool of plugins/examples/text-stats-ts, written in Go, so the
// benchmarks (`prx-bench languages`) compare one piece of work across
// languages. Same rules as the TypeScript.
package main

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"unicode"

	"prx.local/pdk"
)

func isWordRune(r rune) bool {
	if unicode.IsSpace(r) {
		return false
	}
	return r == '\'' || r > unicode.MaxASCII || !unicode.IsPunct(r) && !unicode.IsSymbol(r)
}

// Words are runs of anything but whitespace and ASCII punctuation other
// than the apostrophe, lower-cased.
func Words(text string) []string {
	return strings.FieldsFunc(strings.ToLower(text), func(r rune) bool { return !isWordRune(r) })
}

type count struct {
	word string
	n    int
}

func mostFrequent(words []string, n int) [][2]any {
	counts := map[string]int{}
	for _, w := range words {
		counts[w]++
	}
	sorted := make([]count, 0, len(counts))
	for w, c := range counts {
		sorted = append(sorted, count{w, c})
	}
	sort.Slice(sorted, func(i, j int) bool {
		if sorted[i].n != sorted[j].n {
			return sorted[i].n > sorted[j].n
		}
		return sorted[i].word < sorted[j].word
	})
	top := [][2]any{}
	for i := 0; i < n && i < len(sorted); i++ {
		top = append(top, [2]any{sorted[i].word, sorted[i].n})
	}
	return top
}

// TextStats is the tool.
func TextStats(args string) (string, error) {
	var in struct {
		Text *string `json:"text"`
		Top  *int    `json:"top"`
	}
	if err := json.Unmarshal([]byte(args), &in); err != nil || in.Text == nil {
		return "", fmt.Errorf(`"text" must be a string`)
	}
	top := 3
	if in.Top != nil {
		top = *in.Top
	}
	if top < 0 || top > 50 {
		return "", fmt.Errorf(`"top" must be a whole number from 0 to 50`)
	}
	perMinute := 230.0
	if v, ok := pdk.ConfigGet("words_per_minute"); ok {
		perMinute, _ = strconv.ParseFloat(v, 64)
	}
	if perMinute <= 0 {
		return "", fmt.Errorf("words_per_minute in [config] must be a positive number")
	}
	all := Words(*in.Text)
	sentences := 0
	for _, s := range strings.FieldsFunc(*in.Text, func(r rune) bool { return r == '.' || r == '!' || r == '?' }) {
		if strings.TrimSpace(s) != "" {
			sentences++
		}
	}
	seen, err := pdk.KvIncrement("texts_seen", 1)
	if err != nil {
		return "", err
	}
	pdk.Log(pdk.Debug, fmt.Sprintf("text %d: %d words", seen, len(all)))
	out, err := json.Marshal(map[string]any{
		"words":           len(all),
		"sentences":       sentences,
		"top":             mostFrequent(all, top),
		"reading_seconds": int(math.Ceil(float64(len(all)) / perMinute * 60)),
		"texts_seen":      seen,
	})
	return string(out), err
}

func init() {
	pdk.Tool("text_stats_go", "Statistics of a text", `{"type":"object","required":["text"]}`, TextStats)
}

func main() {}

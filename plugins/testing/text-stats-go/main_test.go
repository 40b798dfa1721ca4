package main

import (
	"reflect"
	"testing"

	"prx.local/pdk"
)

func TestTheSameAnswersAsTheTypeScript(t *testing.T) {
	pdk.Fake.Reset()
	if got := Words("It's 2 o'clock, Zoë!"); !reflect.DeepEqual(got, []string{"it's", "2", "o'clock", "zoë"}) {
		t.Fatalf("%q", got)
	}
	got, err := pdk.Call(`{"text":"The cat sat. The cat ran!","top":2}`)
	want := `{"reading_seconds":2,"sentences":2,"texts_seen":1,"top":[["cat",2],["the",2]],"words":6}`
	if err != nil || got != want {
		t.Fatalf("%s %v", got, err)
	}
}

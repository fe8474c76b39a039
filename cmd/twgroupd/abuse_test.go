package main

import (
	"strings"
	"testing"
)

// `twgroupd abuse` end to end, small and on a few rows: it starts its
// victim and peer, runs the rows, prints the summary table and exits.
func TestAbuseCommandSmall(t *testing.T) {
	r := runBin(t, "", "abuse", "--small", "--only=port,origin,batch,members")
	if r.status != 0 {
		t.Fatalf("abuse: %+v", r)
	}
	for _, want := range []string{
		"| attack | outcome | victim RSS peak | RPC p99 | legitimate |",
		"| 30000 PORT messages from one peer | ",
		"own dhtget works",
		"| a page on another origin POSTs text/plain with cached basic auth | HTTP 403 (null origin 403, rebound Host 403; own origin 200)",
		"| one 5000-element batch | HTTP 400",
		"| one member's member list names 10 unregistered and 80 registered users | unregistered followed 0 -> 0, after a restart 0; ",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, r.stdout)
		}
	}
	if r := runBin(t, "", "abuse", "--only=nosuch"); r.status != 1 || !strings.Contains(r.stderr, "unknown row") {
		t.Errorf("unknown row: %+v", r)
	}
}

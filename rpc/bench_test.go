package rpc

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
)

// BenchmarkHandleBody measures one getdirectmsgs request through parsing,
// dispatch and JSON rendering, without the network.
func BenchmarkHandleBody(b *testing.B) {
	cfg, _, _, _ := node1(b)
	cfg.Logger = discardLogger()
	s, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	body := []byte(`{"jsonrpc":"2.0","id":1,"method":"getdirectmsgs","params":["alice",20,[{"username":"bob"},{"username":"*reawrcvt"}]]}`)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, status, _ := s.handleBody(ctx, body); status != http.StatusOK {
			b.Fatal(status)
		}
	}
}

// BenchmarkHTTPCall measures twister-html's 1 s poll, getlasthave, as a
// keep-alive HTTP request on 127.0.0.1.
func BenchmarkHTTPCall(b *testing.B) {
	cfg, _, _, _ := node1(b)
	cfg.Logger = discardLogger()
	cfg.Listen = []string{"127.0.0.1:0"}
	s, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	<-s.Ready()
	defer func() { cancel(); <-done }()
	url := "http://" + s.Addrs()[0].String() + "/"
	body := `{"jsonrpc":"2.0","id":1,"method":"getlasthave","params":["alice"]}`
	client := &http.Client{}
	b.ReportAllocs()
	for b.Loop() {
		req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
		req.SetBasicAuth("user", "pwd")
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatal(resp.StatusCode)
		}
	}
}

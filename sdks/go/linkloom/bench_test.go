package linkloom

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// Benchmarks of bench/bench_sdk.py: a task endpoint built with the SDK (signature check,
// parsing, idempotency store, response mapping) against a plain net/http handler that parses the
// same body and writes the same answer, both over real HTTP on 127.0.0.1.
//
//	go test -run '^$' -bench Handler -benchtime 4000x ./linkloom

func benchDeliveries(n int) ([][]byte, []map[string]string) {
	bodies := make([][]byte, n)
	headers := make([]map[string]string, n)
	run := fmt.Sprint(time.Now().UnixNano())
	for i := range bodies {
		bodies[i] = []byte(fmt.Sprintf(`{"run_id":%q,"flow_id":"bench","flow_version":1,"step_id":"s%d","attempt":1,"idempotency_key":"%s:s%d","inputs":{"n":%d},"upstream":{},"item":null,"index":null,"callback":null}`, run, i, run, i, i))
		h := Sign("bench-key", bodies[i], time.Now())
		h["Idempotency-Key"] = fmt.Sprintf("%s:s%d", run, i)
		h["Content-Type"] = "application/json"
		headers[i] = h
	}
	return bodies, headers
}

func runHandlerBench(b *testing.B, handler http.Handler) {
	server := httptest.NewServer(handler)
	defer server.Close()
	bodies, headers := benchDeliveries(b.N)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	var next int64 = -1
	b.SetParallelism(8)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := atomic.AddInt64(&next, 1)
			req, _ := http.NewRequest(http.MethodPost, server.URL, strings.NewReader(string(bodies[i])))
			for k, v := range headers[i] {
				req.Header.Set(k, v)
			}
			resp, err := client.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Fatalf("HTTP %d", resp.StatusCode)
			}
		}
	})
}

func BenchmarkPlainHandler(b *testing.B) {
	runHandlerBench(b, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var env map[string]any
		if err := json.Unmarshal(body, &env); err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		inputs, _ := env["inputs"].(map[string]any)
		out, _ := json.Marshal(map[string]any{"status": "SUCCESS", "output": map[string]any{"n": inputs["n"]}, "logs": []string{}})
		w.Header().Set("Content-Type", "application/json")
		w.Write(out)
	}))
}

func BenchmarkSDKHandler(b *testing.B) {
	d, _ := NewDispatcher(Options{SigningKey: "bench-key", Idempotency: NewMemoryStore()})
	runHandlerBench(b, d.Task(func(ctx context.Context, task *Task) (any, error) {
		return map[string]any{"n": task.Inputs["n"]}, nil
	}))
}

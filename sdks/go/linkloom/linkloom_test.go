package linkloom

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

const key = "test-key"

// The test vectors of docs/protocol.md, section 4.
func TestSignMatchesTheProtocolTestVectors(t *testing.T) {
	for body, want := range map[string]string{
		`{"a":1}`: "v1=25e079f0ade4766fd01176738fe281c3bc05c399d51f7ee8865b86d293159742",
		"":        "v1=feedb4b16dc2e92285c54c96b90a6a309a7bc23401442e1695eca1af5540f231",
	} {
		got := Sign("example-key", []byte(body), time.Unix(1700000000, 0))
		if got[SignatureHeader] != want || got[TimestampHeader] != "1700000000" {
			t.Fatalf("body %q: got %v, want %s", body, got, want)
		}
	}
}

func TestVerifyRefusesWhatTheProtocolRefuses(t *testing.T) {
	at := time.Unix(1700000000, 0)
	ok := Sign(key, []byte("body"), at)
	header := func(ts, sig string) http.Header {
		h := http.Header{}
		if ts != "" {
			h.Set(TimestampHeader, ts)
		}
		if sig != "" {
			h.Set(SignatureHeader, sig)
		}
		return h
	}
	good := header(ok[TimestampHeader], ok[SignatureHeader])
	if _, err := Verify(key, []byte("body"), good, DefaultTolerance, at.Add(299*time.Second)); err != nil {
		t.Fatalf("valid signature refused: %v", err)
	}
	cases := map[string]struct {
		h    http.Header
		body string
		now  time.Time
		want string
	}{
		"missing":     {http.Header{}, "body", at, "missing"},
		"stale":       {good, "body", at.Add(301 * time.Second), "away from now"},
		"future":      {good, "body", at.Add(-301 * time.Second), "away from now"},
		"tampered":    {good, "bodx", at, "does not match"},
		"two entries": {header(ok[TimestampHeader], ok[SignatureHeader]+","+ok[SignatureHeader]), "body", at, "exactly one"},
		"v0":          {header(ok[TimestampHeader], strings.Replace(ok[SignatureHeader], "v1=", "v0=", 1)), "body", at, "exactly one"},
		"fractional":  {header("1700000000.5", ok[SignatureHeader]), "body", at, "whole unix seconds"},
		"wrong key":   {header(ok[TimestampHeader], Sign("other", []byte("body"), at)[SignatureHeader]), "body", at, "does not match"},
	}
	for name, c := range cases {
		_, err := Verify(key, []byte(c.body), c.h, DefaultTolerance, c.now)
		var sigErr *SignatureError
		if !errors.As(err, &sigErr) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want a SignatureError with %q", name, err, c.want)
		}
	}
}

func deliver(t *testing.T, h http.Handler, envelope map[string]any, tamper bool) (*http.Response, map[string]any) {
	t.Helper()
	body, _ := json.Marshal(envelope)
	req := httptest.NewRequest(http.MethodPost, "/task", strings.NewReader(string(body)))
	for k, v := range Sign(key, body, time.Now()) {
		req.Header.Set(k, v)
	}
	req.Header.Set("Idempotency-Key", envelope["run_id"].(string)+":"+envelope["step_id"].(string))
	if tamper {
		req = httptest.NewRequest(http.MethodPost, "/task", strings.NewReader(strings.Replace(string(body), "3", "4", 1)))
		req.Header = http.Header{}
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	resp := rec.Result()
	data, _ := io.ReadAll(resp.Body)
	var out map[string]any
	json.Unmarshal(data, &out)
	return resp, out
}

func envelope(step string) map[string]any {
	return map[string]any{
		"run_id": "r1", "flow_id": "f", "flow_version": 2, "step_id": step, "attempt": 1,
		"inputs": map[string]any{"n": 3}, "upstream": map[string]any{"up": map[string]any{"output": 5}},
		"item": nil, "index": nil, "callback": nil,
	}
}

func TestHandlerMapsOutcomesAndDeduplicatesSuccess(t *testing.T) {
	d, err := NewDispatcher(Options{SigningKey: key, Idempotency: NewMemoryStore()})
	if err != nil {
		t.Fatal(err)
	}
	runs := 0
	ok := d.Task(func(ctx context.Context, task *Task) (any, error) {
		runs++
		task.Log("ran %d", runs)
		return map[string]any{"double": task.Int("n", 0) * 2, "up": task.OutputOf("up")}, nil
	})
	resp, body := deliver(t, ok, envelope("s"), false)
	if resp.StatusCode != 200 || body["status"] != "SUCCESS" {
		t.Fatalf("got %d %v", resp.StatusCode, body)
	}
	if out := body["output"].(map[string]any); out["double"] != 6.0 || out["up"] != 5.0 {
		t.Fatalf("output %v", out)
	}
	resp, again := deliver(t, ok, envelope("s"), false)
	if runs != 1 || resp.Header.Get("X-Loom-Idempotent-Replay") != "true" || again["status"] != "SUCCESS" {
		t.Fatalf("replay: runs=%d header=%q body=%v", runs, resp.Header.Get("X-Loom-Idempotent-Replay"), again)
	}
	if resp, body := deliver(t, ok, envelope("s"), true); resp.StatusCode != 401 || body["code"] != "invalid_signature" {
		t.Fatalf("tampered: %d %v", resp.StatusCode, body)
	}
	fails := 0
	failing := d.Task(func(ctx context.Context, task *Task) (any, error) {
		fails++
		return Failed("busy", true), nil
	})
	deliver(t, failing, envelope("f"), false)
	resp, body = deliver(t, failing, envelope("f"), false)
	if fails != 2 || body["retryable"] != true || resp.StatusCode != 200 {
		t.Fatalf("FAILED must not be stored: fails=%d body=%v", fails, body)
	}
	later := d.Task(func(ctx context.Context, task *Task) (any, error) {
		return nil, RetryLater("locked", 1500*time.Millisecond)
	})
	resp, body = deliver(t, later, envelope("l"), false)
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") != "2" || body["retryable"] != true {
		t.Fatalf("retry later: %d %q %v", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	broken := d.Task(func(ctx context.Context, task *Task) (any, error) { return nil, errors.New("no disk") })
	if _, body := deliver(t, broken, envelope("b"), false); body["status"] != "FAILED" || body["error"] != "no disk" {
		t.Fatalf("error: %v", body)
	}
}

func TestAsyncTaskAnswers202HeartbeatsAndCallsBack(t *testing.T) {
	var beats, results int
	var result map[string]any
	server := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if _, err := Verify(key, body, r.Header, DefaultTolerance, time.Now()); err != nil {
			w.WriteHeader(401)
			return
		}
		if strings.HasSuffix(r.URL.Path, "/heartbeat") {
			beats++
		} else {
			results++
			json.Unmarshal(body, &result)
		}
	}))
	defer server.Close()
	d, _ := NewDispatcher(Options{SigningKey: key, Heartbeat: 50 * time.Millisecond})
	h := d.AsyncTask(func(ctx context.Context, task *Task) (any, error) {
		time.Sleep(300 * time.Millisecond)
		task.Log("done")
		return "report", nil
	})
	env := envelope("a")
	env["callback"] = map[string]any{"url": server.URL + "/cb", "heartbeat_url": server.URL + "/cb/heartbeat"}
	if resp, body := deliver(t, h, env, false); resp.StatusCode != 202 || body["status"] != "ACCEPTED" {
		t.Fatalf("got %d %v", resp.StatusCode, body)
	}
	d.Wait()
	if beats < 3 || results != 1 || result["output"] != "report" || result["logs"].([]any)[0] != "done" {
		t.Fatalf("beats=%d results=%d result=%v", beats, results, result)
	}
}

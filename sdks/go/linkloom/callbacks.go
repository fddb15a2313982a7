package linkloom

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log"
	"net/http"
	"time"
)

// CallbackOutcome is what became of a callback or heartbeat.
type CallbackOutcome string

const (
	Delivered        CallbackOutcome = "delivered"         // 2xx
	AlreadyCompleted CallbackOutcome = "already_completed" // 409: never retried
	Rejected         CallbackOutcome = "rejected"          // another 4xx
	GaveUp           CallbackOutcome = "gave_up"           // connection errors or 5xx after every try
)

// CallbackSender signs and POSTs results and heartbeats of async steps (docs/protocol.md,
// section 2), retrying connection errors, 429 and 5xx with backoff; each try is signed afresh.
type CallbackSender struct {
	SigningKey string
	Retries    int           // after the first try (default 6)
	Backoff    time.Duration // first delay (default 500 ms, doubling up to 10 s)
	Client     *http.Client
}

// NewCallbackSender returns a sender with the defaults.
func NewCallbackSender(key string) *CallbackSender {
	return &CallbackSender{SigningKey: key, Retries: 6, Backoff: 500 * time.Millisecond, Client: &http.Client{Timeout: 10 * time.Second}}
}

// Complete posts the final result (a *Result or a plain output) to the callback URL.
func (c *CallbackSender) Complete(ctx context.Context, url string, result any, logs []string) CallbackOutcome {
	body, err := json.Marshal(asResult(result).Wire(logs))
	if err != nil {
		body, _ = json.Marshal(Failed("the result is not JSON: "+err.Error(), false).Wire(logs))
	}
	return c.post(ctx, url, body, c.Retries+1)
}

// Heartbeat posts one heartbeat, retried once (the next one comes anyway).
func (c *CallbackSender) Heartbeat(ctx context.Context, url string) CallbackOutcome {
	return c.post(ctx, url, []byte("{}"), 2)
}

func (c *CallbackSender) post(ctx context.Context, url string, body []byte, attempts int) CallbackOutcome {
	delay := c.Backoff
	for attempt := 1; attempt <= attempts; attempt++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
		if err != nil {
			log.Printf("loom_callback_rejected: %v", err)
			return Rejected
		}
		req.Header.Set("Content-Type", "application/json")
		for k, v := range Sign(c.SigningKey, body, time.Now()) {
			req.Header.Set(k, v)
		}
		resp, err := c.Client.Do(req)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			switch {
			case resp.StatusCode < 300:
				return Delivered
			case resp.StatusCode == http.StatusConflict:
				return AlreadyCompleted
			case resp.StatusCode < 500 && resp.StatusCode != http.StatusTooManyRequests:
				log.Printf("loom_callback_rejected: HTTP %d", resp.StatusCode)
				return Rejected
			}
		} else {
			log.Printf("loom_callback_connection_error: %v (try %d/%d)", err, attempt, attempts)
		}
		if attempt < attempts {
			select {
			case <-ctx.Done():
				return GaveUp
			case <-time.After(delay):
			}
			if delay *= 2; delay > 10*time.Second {
				delay = 10 * time.Second
			}
		}
	}
	return GaveUp
}

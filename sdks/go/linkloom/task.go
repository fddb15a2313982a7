package linkloom

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Task is one delivery of a step, parsed from the task envelope and the X-Loom-* headers.
type Task struct {
	RunID          string
	FlowID         string
	FlowVersion    int
	StepID         string
	Attempt        int
	IdempotencyKey string
	Inputs         map[string]any
	// Upstream holds, per step this one depends on, {"output": ..., "outputs": {...}}.
	Upstream     map[string]map[string]any
	Item         any
	Index        *int
	CallbackURL  string
	HeartbeatURL string
	// Body is the parsed JSON body as sent: the envelope, or the step's own body.
	Body any
	// IsEnvelope is false when the flow declared its own body (metadata from the headers).
	IsEnvelope bool
	Header     http.Header

	mu   sync.Mutex
	logs []string
}

// IsAsync is true when the server waits for a callback (the step is mode: async).
func (t *Task) IsAsync() bool { return t.CallbackURL != "" }

// Log adds a line returned to the server with the result.
func (t *Task) Log(format string, args ...any) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.logs = append(t.logs, fmt.Sprintf(format, args...))
}

// Logs returns the lines logged so far.
func (t *Task) Logs() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]string{}, t.logs...)
}

// OutputOf returns the output of an upstream step, or nil when there is none.
func (t *Task) OutputOf(stepID string) any {
	if up, ok := t.Upstream[stepID]; ok {
		return up["output"]
	}
	return nil
}

// Int reads inputs[name] as an integer, or def.
func (t *Task) Int(name string, def int) int { return toInt(t.Inputs[name], def) }

// Float reads inputs[name] as a number, or def.
func (t *Task) Float(name string, def float64) float64 { return toFloat(t.Inputs[name], def) }

// String reads inputs[name] as a string, or def.
func (t *Task) String(name string, def string) string {
	if v, ok := t.Inputs[name]; ok && v != nil {
		return fmt.Sprint(v)
	}
	return def
}

// Bool reads inputs[name] as a boolean (true only for JSON true).
func (t *Task) Bool(name string) bool { v, _ := t.Inputs[name].(bool); return v }

// ParseTask reads a delivery; the error says why the body is not JSON.
func ParseTask(body []byte, header http.Header) (*Task, error) {
	var data any
	if len(bytes.TrimSpace(body)) > 0 {
		if err := decode(body, &data); err != nil {
			return nil, fmt.Errorf("the request body is not JSON: %v", err)
		}
	}
	env, _ := data.(map[string]any)
	_, hasRun := env["run_id"]
	_, hasStep := env["step_id"]
	envelope := env != nil && hasRun && hasStep
	if !envelope {
		env = map[string]any{}
	}
	callback, _ := env["callback"].(map[string]any)
	t := &Task{
		RunID:          first(str(env["run_id"]), header.Get("X-Loom-Run-Id")),
		FlowID:         first(str(env["flow_id"]), header.Get("X-Loom-Flow-Id")),
		FlowVersion:    toInt(firstAny(env["flow_version"], header.Get("X-Loom-Flow-Version")), 0),
		StepID:         first(str(env["step_id"]), header.Get("X-Loom-Step-Id")),
		Attempt:        toInt(firstAny(env["attempt"], header.Get("X-Loom-Attempt")), 1),
		IdempotencyKey: first(str(env["idempotency_key"]), header.Get("Idempotency-Key")), // signed one first
		Inputs:         map[string]any{},
		Upstream:       map[string]map[string]any{},
		Item:           env["item"],
		CallbackURL:    first(str(callback["url"]), header.Get("X-Loom-Callback-Url")),
		HeartbeatURL:   first(str(callback["heartbeat_url"]), header.Get("X-Loom-Heartbeat-Url")),
		Body:           data,
		IsEnvelope:     envelope,
		Header:         header,
	}
	if inputs, ok := env["inputs"].(map[string]any); ok {
		t.Inputs = inputs
	}
	if upstream, ok := env["upstream"].(map[string]any); ok {
		for id, v := range upstream {
			if m, ok := v.(map[string]any); ok {
				t.Upstream[id] = m
			} else {
				t.Upstream[id] = map[string]any{"output": v}
			}
		}
	}
	if env["index"] != nil {
		i := toInt(env["index"], 0)
		t.Index = &i
	}
	return t, nil
}

// Result controls the reply fully. A plain returned value means SUCCESS.
type Result struct {
	Status    string // "SUCCESS" or "FAILED"
	Output    any
	Error     string
	Logs      []string
	Retryable bool
}

// Success is a successful result with output.
func Success(output any) *Result { return &Result{Status: "SUCCESS", Output: output} }

// Failed is a failure; retryable lets the server retry it under the step's policy.
func Failed(message string, retryable bool) *Result {
	return &Result{Status: "FAILED", Error: message, Retryable: retryable}
}

// Wire is the JSON reply: the request's log lines first, then the result's own.
func (r *Result) Wire(extraLogs []string) map[string]any {
	wire := map[string]any{"status": r.Status, "output": r.Output, "logs": append(append([]string{}, extraLogs...), r.Logs...)}
	if r.Status == "FAILED" {
		wire["error"] = r.Error
		if r.Retryable {
			wire["retryable"] = true
		}
	}
	return wire
}

// RetryLaterError asks the server to retry the delivery: the reply is 503 with Retry-After.
type RetryLaterError struct {
	Message string
	After   time.Duration
	HasWait bool
}

func (e *RetryLaterError) Error() string { return e.Message }

// RetryLater returns an error that answers 503 with Retry-After (whole seconds, rounded up).
func RetryLater(message string, after time.Duration) error {
	return &RetryLaterError{Message: message, After: after, HasWait: true}
}

func asResult(value any) *Result {
	switch v := value.(type) {
	case *Result:
		return v
	case Result:
		return &v
	}
	return Success(value)
}

func decode(body []byte, into any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber() // keep integers exact
	if err := dec.Decode(into); err != nil {
		return err
	}
	if dec.More() {
		return fmt.Errorf("extra data after the JSON value")
	}
	return nil
}

func str(v any) string {
	if v == nil {
		return ""
	}
	return fmt.Sprint(v)
}

func first(values ...string) string {
	for _, v := range values {
		if v != "" {
			return v
		}
	}
	return ""
}

func firstAny(v any, fallback string) any {
	if v != nil {
		return v
	}
	if fallback == "" {
		return nil
	}
	return fallback
}

func toInt(v any, def int) int {
	switch n := v.(type) {
	case json.Number:
		if i, err := n.Int64(); err == nil {
			return int(i)
		}
		if f, err := n.Float64(); err == nil {
			return int(f)
		}
	case float64:
		return int(n)
	case int:
		return n
	case string:
		if i, err := strconv.Atoi(strings.TrimSpace(n)); err == nil {
			return i
		}
	}
	return def
}

func toFloat(v any, def float64) float64 {
	switch n := v.(type) {
	case json.Number:
		if f, err := n.Float64(); err == nil {
			return f
		}
	case float64:
		return n
	case int:
		return float64(n)
	case string:
		if f, err := strconv.ParseFloat(strings.TrimSpace(n), 64); err == nil {
			return f
		}
	}
	return def
}

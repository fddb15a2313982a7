package linkloom

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// TaskFunc handles one delivery: return a value (the output of a SUCCESS), a *Result, or an
// error (a RetryLater error answers 503; any other error fails the step for good).
type TaskFunc func(ctx context.Context, task *Task) (any, error)

// Options configure a Dispatcher.
type Options struct {
	SigningKey string // the server's security.signing_key; required unless Insecure
	Insecure   bool   // accept unsigned deliveries: local development only
	Tolerance  time.Duration
	// Idempotency de-duplicates by Idempotency-Key (nil: every delivery runs the handler).
	Idempotency   IdempotencyStore
	ClaimTTL      time.Duration // default 5 min; async work: AsyncClaimTTL (default 1 h)
	AsyncClaimTTL time.Duration
	Heartbeat     time.Duration // heartbeats of background work (default 10 s)
	Callbacks     *CallbackSender
	MaxBody       int64 // largest task body read (default 20 MB)
}

// Dispatcher turns TaskFuncs into http.Handlers that speak the task protocol
// (docs/protocol.md): verify (401), parse (400), de-duplicate (stored SUCCESS replayed; a key in
// progress gets 503), run and map the outcome. Only SUCCESS replies are stored.
type Dispatcher struct {
	opts       Options
	background sync.WaitGroup
}

// NewDispatcher checks the options and fills in defaults.
func NewDispatcher(opts Options) (*Dispatcher, error) {
	if opts.SigningKey == "" && !opts.Insecure {
		return nil, errors.New("set SigningKey (the server's LOOM_SECURITY__SIGNING_KEY), or Insecure for local development only")
	}
	if opts.Insecure {
		log.Print("loom_signature_verification_disabled: accepting unsigned tasks (development only)")
	}
	if opts.Tolerance == 0 {
		opts.Tolerance = DefaultTolerance
	}
	if opts.ClaimTTL == 0 {
		opts.ClaimTTL = 5 * time.Minute
	}
	if opts.AsyncClaimTTL == 0 {
		opts.AsyncClaimTTL = time.Hour
	}
	if opts.Heartbeat == 0 {
		opts.Heartbeat = 10 * time.Second
	}
	if opts.Callbacks == nil {
		opts.Callbacks = NewCallbackSender(opts.SigningKey)
	}
	if opts.MaxBody == 0 {
		opts.MaxBody = 20_000_000
	}
	return &Dispatcher{opts: opts}, nil
}

// Task is the http.Handler of a task endpoint (POST only).
func (d *Dispatcher) Task(fn TaskFunc) http.Handler { return d.handler(fn, false) }

// AsyncTask answers a mode: async step 202 at once, runs fn in the background with heartbeats
// and posts its result to the callback URL; on a sync step it runs inline.
func (d *Dispatcher) AsyncTask(fn TaskFunc) http.Handler { return d.handler(fn, true) }

// Wait blocks until background work (async steps) has finished: for tests and shutdown.
func (d *Dispatcher) Wait() { d.background.Wait() }

func (d *Dispatcher) handler(fn TaskFunc, async bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", "POST")
			write(w, errorReply(http.StatusMethodNotAllowed, "method_not_allowed", "task endpoints take POST"))
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, d.opts.MaxBody+1))
		if err != nil || int64(len(body)) > d.opts.MaxBody {
			write(w, errorReply(http.StatusRequestEntityTooLarge, "too_large", "the task body is too large or unreadable"))
			return
		}
		write(w, d.Dispatch(r.Context(), fn, async, body, r.Header))
	})
}

// Dispatch handles one delivery (the raw body and its headers) and returns the reply.
func (d *Dispatcher) Dispatch(ctx context.Context, fn TaskFunc, async bool, body []byte, header http.Header) Reply {
	if !d.opts.Insecure {
		if _, err := Verify(d.opts.SigningKey, body, header, d.opts.Tolerance, time.Now()); err != nil {
			log.Printf("loom_task_rejected: %v", err)
			return errorReply(http.StatusUnauthorized, "invalid_signature", "invalid signature: "+err.Error())
		}
	}
	task, err := ParseTask(body, header)
	if err != nil {
		return errorReply(http.StatusBadRequest, "bad_request", err.Error())
	}
	if store, key := d.opts.Idempotency, task.IdempotencyKey; store != nil && key != "" {
		if stored, ok := store.Get(key); ok {
			return replay(*stored)
		}
		ttl := d.opts.ClaimTTL
		if async {
			ttl = d.opts.AsyncClaimTTL
		}
		if !store.Claim(key, ttl) {
			if stored, ok := store.Get(key); ok {
				return replay(*stored)
			}
			reply := errorReply(http.StatusServiceUnavailable, "in_progress",
				fmt.Sprintf("a delivery with Idempotency-Key %q is still being processed; retry later", key))
			reply.Header = map[string]string{"Retry-After": "5"}
			return reply
		}
	}
	if async && task.IsAsync() {
		d.background.Add(1)
		go func() {
			defer d.background.Done()
			d.completeLater(task, fn)
		}()
		return Reply{Status: http.StatusAccepted, Body: map[string]any{"status": "ACCEPTED"}}
	}
	value, err := call(ctx, fn, task)
	if err != nil {
		var later *RetryLaterError
		if errors.As(err, &later) {
			d.forget(task)
			header := map[string]string{}
			if later.HasWait {
				header["Retry-After"] = strconv.Itoa(int(math.Ceil(later.After.Seconds())))
			}
			return Reply{Status: http.StatusServiceUnavailable, Body: Failed(later.Message, true).Wire(task.Logs()), Header: header}
		}
		return d.finish(task, failure(task, err))
	}
	return d.finish(task, asResult(value))
}

func (d *Dispatcher) finish(task *Task, result *Result) Reply {
	reply := Reply{Status: http.StatusOK, Body: result.Wire(task.Logs())}
	d.remember(task, result, reply)
	return reply
}

func (d *Dispatcher) remember(task *Task, result *Result, reply Reply) {
	if d.opts.Idempotency == nil || task.IdempotencyKey == "" {
		return
	}
	if result.Status == "SUCCESS" {
		d.opts.Idempotency.Put(task.IdempotencyKey, reply)
	} else {
		d.opts.Idempotency.Release(task.IdempotencyKey)
	}
}

func (d *Dispatcher) forget(task *Task) {
	if d.opts.Idempotency != nil && task.IdempotencyKey != "" {
		d.opts.Idempotency.Release(task.IdempotencyKey)
	}
}

func (d *Dispatcher) completeLater(task *Task, fn TaskFunc) {
	ctx := context.Background()
	done := make(chan struct{})
	beats := make(chan struct{})
	go func() {
		defer close(beats)
		if task.HeartbeatURL == "" {
			return
		}
		ticker := time.NewTicker(d.opts.Heartbeat)
		defer ticker.Stop()
		for {
			select {
			case <-done:
				return
			case <-ticker.C:
				outcome := d.opts.Callbacks.Heartbeat(ctx, task.HeartbeatURL)
				if outcome == AlreadyCompleted || outcome == Rejected {
					log.Printf("loom_heartbeat_refused: the attempt is over (%s)", outcome)
					return
				}
			}
		}
	}()
	value, err := call(ctx, fn, task)
	close(done)
	<-beats // no heartbeat after the result
	var result *Result
	var later *RetryLaterError
	switch {
	case errors.As(err, &later):
		result = Failed(later.Message, true)
	case err != nil:
		result = failure(task, err)
	default:
		result = asResult(value)
	}
	outcome := d.opts.Callbacks.Complete(ctx, task.CallbackURL, result, task.Logs())
	if outcome == Delivered || outcome == AlreadyCompleted {
		d.remember(task, result, Reply{Status: http.StatusOK, Body: result.Wire(task.Logs())})
	} else {
		d.forget(task)
	}
}

// call runs fn, turning a panic into an error so one bad handler cannot stop the backend.
func call(ctx context.Context, fn TaskFunc, task *Task) (value any, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic: %v", p)
		}
	}()
	return fn(ctx, task)
}

func failure(task *Task, err error) *Result {
	log.Printf("loom_task_failed: step %s of run %s: %v", task.StepID, task.RunID, err)
	return Failed(err.Error(), false)
}

func replay(stored Reply) Reply {
	header := map[string]string{"X-Loom-Idempotent-Replay": "true"}
	for k, v := range stored.Header {
		header[k] = v
	}
	stored.Header = header
	return stored
}

func errorReply(status int, code, message string) Reply {
	return Reply{Status: status, Body: map[string]any{"status": "FAILED", "error": message, "code": code}}
}

func write(w http.ResponseWriter, reply Reply) {
	body, err := json.Marshal(reply.Body)
	if err != nil {
		reply = errorReply(http.StatusOK, "bad_output", "the handler's output is not JSON: "+err.Error())
		body, _ = json.Marshal(reply.Body)
	}
	for k, v := range reply.Header {
		w.Header().Set(k, v)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(reply.Status)
	w.Write(body)
}

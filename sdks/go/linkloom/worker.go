package linkloom

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"
)

// Job is one task attempt handed to a worker's handler.
type Job struct {
	Token          string
	Task           string
	Queue          string
	Payload        any
	Inputs         map[string]any
	Upstream       map[string]any
	RunID          string
	FlowID         string
	StepID         string
	Attempt        int
	IdempotencyKey string
	Item           any
	Index          *int
	Deliveries     int

	mu   sync.Mutex
	logs []string
}

// Log adds a line stored with the step's attempt.
func (j *Job) Log(format string, args ...any) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.logs = append(j.logs, fmt.Sprintf(format, args...))
}

func (j *Job) lines() []string {
	j.mu.Lock()
	defer j.mu.Unlock()
	return append([]string{}, j.logs...)
}

// JobFunc runs a job: return the output, a *Result, or an error (RetryLater: retryable).
type JobFunc func(ctx context.Context, job *Job) (any, error)

// WorkerOptions configure a pull-mode worker.
type WorkerOptions struct {
	ServerURL   string
	Token       string // an API token with the author role
	Queues      []string
	WorkerID    string // default: host name and a random suffix
	Concurrency int    // default 4
	Version     string
	PollWait    time.Duration // long-poll wait (default 10 s; the server caps it)
}

// Worker runs type: task steps in a process the server cannot reach (docs/protocol.md,
// section 3): it registers, long-polls, runs handlers, heartbeats while tasks run, reports
// results, and when Run's context ends lets running tasks report, then deregisters.
type Worker struct {
	ID       string
	opts     WorkerOptions
	api      string
	http     *http.Client
	handlers map[string]JobFunc
	mu       sync.Mutex
	inflight map[string]bool
	beat     time.Duration
}

// NewWorker checks the options and fills in defaults.
func NewWorker(opts WorkerOptions) (*Worker, error) {
	if len(opts.Queues) == 0 {
		return nil, errors.New("a worker needs at least one queue")
	}
	if opts.WorkerID == "" {
		host, _ := os.Hostname()
		suffix := make([]byte, 4)
		rand.Read(suffix)
		opts.WorkerID = host + "-" + hex.EncodeToString(suffix)
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = 4
	}
	if opts.PollWait == 0 {
		opts.PollWait = 10 * time.Second
	}
	if opts.Version == "" {
		opts.Version = "go-0.1.0"
	}
	return &Worker{
		ID: opts.WorkerID, opts: opts, api: strings.TrimRight(opts.ServerURL, "/") + "/api/v1",
		http: &http.Client{}, handlers: map[string]JobFunc{}, inflight: map[string]bool{},
		beat: 10 * time.Second,
	}, nil
}

// Handle registers fn for task name.
func (w *Worker) Handle(name string, fn JobFunc) { w.handlers[name] = fn }

// Run works until ctx ends, then finishes running tasks and deregisters.
func (w *Worker) Run(ctx context.Context) error {
	if err := w.register(ctx); err != nil {
		return err
	}
	work := context.Background() // running tasks finish even after ctx ends
	slots := make(chan struct{}, w.opts.Concurrency)
	var running sync.WaitGroup
	beatCtx, stopBeats := context.WithCancel(work)
	defer stopBeats()
	beatsDone := make(chan struct{})
	go func() { defer close(beatsDone); w.heartbeats(beatCtx) }()
	failures := 0
	for ctx.Err() == nil {
		free := w.opts.Concurrency - len(slots)
		if free == 0 {
			select {
			case slots <- struct{}{}: // wait for a free slot
				<-slots
			case <-ctx.Done():
			}
			continue
		}
		tasks, status, err := w.poll(ctx, free)
		if ctx.Err() != nil {
			break
		}
		if status == http.StatusNotFound {
			if err := w.register(ctx); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			failures++
			delay := backoff(failures)
			log.Printf("poll failed (%v); retrying in %s", err, delay)
			sleepCtx(ctx, delay)
			continue
		}
		failures = 0
		for _, data := range tasks {
			job := jobFrom(data)
			slots <- struct{}{}
			w.mu.Lock()
			w.inflight[job.Token] = true
			w.mu.Unlock()
			running.Add(1)
			go func() {
				defer running.Done()
				defer func() { <-slots }()
				w.execute(work, job)
				w.mu.Lock()
				delete(w.inflight, job.Token)
				w.mu.Unlock()
			}()
		}
	}
	running.Wait()
	stopBeats()
	<-beatsDone
	resp, err := w.call(work, http.MethodDelete, "/workers/"+url.PathEscape(w.ID), nil)
	if err == nil {
		resp.Body.Close()
	}
	return nil
}

func (w *Worker) register(ctx context.Context) error {
	host, _ := os.Hostname()
	body := map[string]any{"id": w.ID, "host": host, "queues": w.opts.Queues, "version": w.opts.Version}
	for n := 0; ; n++ {
		resp, err := w.call(ctx, http.MethodPost, "/workers", body)
		if err == nil {
			data, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode < 300 {
				var info struct {
					HeartbeatInterval float64 `json:"heartbeat_interval"`
				}
				if json.Unmarshal(data, &info) == nil && info.HeartbeatInterval > 0 {
					w.beat = time.Duration(info.HeartbeatInterval * float64(time.Second))
				}
				return nil
			}
			if resp.StatusCode < 500 {
				return fmt.Errorf("registration refused: HTTP %d %s", resp.StatusCode, data)
			}
		}
		log.Printf("worker registration failed (%v); retrying", err)
		if !sleepCtx(ctx, backoff(n)) {
			return ctx.Err()
		}
	}
}

func (w *Worker) poll(ctx context.Context, free int) ([]map[string]any, int, error) {
	body := map[string]any{"worker_id": w.ID, "queues": w.opts.Queues, "max_tasks": free, "wait": w.opts.PollWait.Seconds()}
	resp, err := w.call(ctx, http.MethodPost, "/queues/poll", body)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return nil, resp.StatusCode, fmt.Errorf("poll answered HTTP %d", resp.StatusCode)
	}
	var answer struct {
		Tasks []map[string]any `json:"tasks"`
	}
	if err := decode(data, &answer); err != nil {
		return nil, resp.StatusCode, err
	}
	return answer.Tasks, resp.StatusCode, nil
}

func (w *Worker) execute(ctx context.Context, job *Job) {
	var result *Result
	fn, ok := w.handlers[job.Task]
	if !ok {
		result = Failed(fmt.Sprintf("this worker has no handler for task %q", job.Task), false)
	} else {
		value, err := callJob(ctx, fn, job)
		var later *RetryLaterError
		switch {
		case errors.As(err, &later):
			result = Failed(later.Message, true)
		case err != nil:
			result = Failed(err.Error(), false)
		default:
			result = asResult(value)
		}
	}
	report := result.Wire(job.lines())
	report["worker_id"] = w.ID
	for n := 0; n < 8; n++ {
		resp, err := w.call(ctx, http.MethodPost, "/tasks/"+url.PathEscape(job.Token)+"/result", report)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode < 500 { // 204 done; 404/409: a redelivery won or the attempt ended
				return
			}
		}
		sleepCtx(ctx, backoff(n))
	}
}

func callJob(ctx context.Context, fn JobFunc, job *Job) (value any, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic: %v", p)
		}
	}()
	return fn(ctx, job)
}

func (w *Worker) heartbeats(ctx context.Context) {
	for sleepCtx(ctx, w.beat) {
		w.mu.Lock()
		tokens := make([]string, 0, len(w.inflight))
		for token := range w.inflight {
			tokens = append(tokens, token)
		}
		w.mu.Unlock()
		resp, err := w.call(ctx, http.MethodPost, "/workers/"+url.PathEscape(w.ID)+"/heartbeat", map[string]any{"tasks": tokens})
		if err != nil {
			log.Printf("heartbeat failed: %v", err)
			continue
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusNotFound {
			w.register(ctx)
		}
	}
}

func (w *Worker) call(ctx context.Context, method, path string, body any) (*http.Response, error) {
	var reader io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		reader = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, w.api+path, reader)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "loom-worker-go/"+w.opts.Version)
	if w.opts.Token != "" {
		req.Header.Set("Authorization", "Bearer "+w.opts.Token)
	}
	return w.http.Do(req)
}

func jobFrom(data map[string]any) *Job {
	env, _ := data["envelope"].(map[string]any)
	job := &Job{
		Token: str(data["token"]), Task: str(data["task"]), Queue: str(data["queue"]),
		Payload: env["payload"], Inputs: map[string]any{}, Upstream: map[string]any{},
		RunID: str(env["run_id"]), FlowID: str(env["flow_id"]), StepID: str(env["step_id"]),
		Attempt: toInt(env["attempt"], 0), IdempotencyKey: str(env["idempotency_key"]),
		Item: env["item"], Deliveries: toInt(data["deliveries"], 1),
	}
	if m, ok := env["inputs"].(map[string]any); ok {
		job.Inputs = m
	}
	if m, ok := env["upstream"].(map[string]any); ok {
		job.Upstream = m
	}
	if env["index"] != nil {
		i := toInt(env["index"], 0)
		job.Index = &i
	}
	return job
}

func backoff(n int) time.Duration {
	if n > 6 {
		n = 6
	}
	d := time.Duration(500*(1<<n)) * time.Millisecond
	if d > 30*time.Second {
		d = 30 * time.Second
	}
	return d
}

// sleepCtx sleeps d unless ctx ends first; false when it ended.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// The Link Loom example user backend and pull worker in Go (standard library + the Go SDK).
//
//	go build -o bin/example-backend . && bin/example-backend serve --port 8081
//	bin/example-backend worker    # LOOM_SERVER_URL, LOOM_TOKEN, LOOM_WORKER_QUEUES, LOOM_WORKER_ID
//
// It serves the daily-report flow's tasks and the endpoints of the SDK conformance suite
// (tests/conformance/README.md). The signing key comes from LOOM_SECURITY__SIGNING_KEY.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/linkloom/linkloom/sdks/go/linkloom"
)

const devSigningKey = "dev-only-signing-key-change-me"

func main() {
	if len(os.Args) < 2 || (os.Args[1] != "serve" && os.Args[1] != "worker") {
		fmt.Fprintln(os.Stderr, "usage: example-backend serve [--port 8081] | worker")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if os.Args[1] == "worker" {
		runWorker(ctx)
		return
	}
	flags := flag.NewFlagSet("serve", flag.ExitOnError)
	port := flags.Int("port", 8081, "port to listen on (127.0.0.1)")
	flags.Parse(os.Args[2:])
	serve(ctx, *port)
}

type state struct {
	mu         sync.Mutex
	calls      map[string]int
	effects    []map[string]any
	deliveries map[string]int
}

func (s *state) count(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls[name]++
}

func (s *state) record(kind string, fields map[string]any) map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	effect := map[string]any{"kind": kind, "seq": len(s.effects) + 1}
	for k, v := range fields {
		effect[k] = v
	}
	s.effects = append(s.effects, effect)
	return effect
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func serve(ctx context.Context, port int) {
	st := &state{calls: map[string]int{}, deliveries: map[string]int{}}
	heartbeat, _ := strconv.ParseFloat(envOr("LOOM_EXAMPLE_HEARTBEAT_SECONDS", "1"), 64)

	// docs:start go-handlers
	tasks, err := linkloom.NewDispatcher(linkloom.Options{
		SigningKey:  envOr("LOOM_SECURITY__SIGNING_KEY", devSigningKey),
		Idempotency: linkloom.NewMemoryStore(),
		Heartbeat:   time.Duration(heartbeat * float64(time.Second)),
	})
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/api/tasks/fetch-data", tasks.Task(func(ctx context.Context, task *linkloom.Task) (any, error) {
		st.count("fetch-data")
		n := task.Int("count", 20)
		records := make([]map[string]any, n)
		for i := range records {
			records[i] = map[string]any{"id": i, "value": i * 10, "valid": i%20 != 0}
		}
		task.Log("Fetched %d records", n)
		return map[string]any{"records": records, "count": n}, nil
	}))
	mux.Handle("/api/tasks/process", tasks.Task(func(ctx context.Context, task *linkloom.Task) (any, error) {
		st.count("process")
		fetched, _ := task.OutputOf("fetch_data").(map[string]any)
		records, _ := fetched["records"].([]any)
		valid := 0
		for _, r := range records {
			if record, _ := r.(map[string]any); record["valid"] == true {
				valid++
			}
		}
		task.Log("Processed data, %d valid", valid)
		return map[string]any{"total": len(records), "valid": valid, "invalid": len(records) - valid}, nil
	}))
	// docs:end go-handlers
	mux.Handle("/api/tasks/send-email", tasks.Task(func(ctx context.Context, task *linkloom.Task) (any, error) {
		st.count("send-email")
		to := task.String("to", "admin@example.com")
		st.record("email", map[string]any{"to": to, "key": task.IdempotencyKey})
		task.Log("Email sent to %s", to)
		return map[string]any{"sent": true, "to": to}, nil
	}))
	mux.Handle("/api/tasks/echo", tasks.Task(func(ctx context.Context, task *linkloom.Task) (any, error) {
		st.count("echo")
		headers := map[string]any{}
		for name := range task.Header {
			if lower := strings.ToLower(name); strings.HasPrefix(lower, "x-loom-") {
				headers[lower] = task.Header.Get(name)
			}
		}
		var body any
		if !task.IsEnvelope {
			body = task.Body
		}
		return map[string]any{
			"run_id": task.RunID, "flow_id": task.FlowID, "flow_version": task.FlowVersion,
			"step_id": task.StepID, "attempt": task.Attempt, "idempotency_key": task.IdempotencyKey,
			"inputs": task.Inputs, "upstream": task.Upstream, "item": task.Item, "index": task.Index,
			"body": body, "headers": headers,
		}, nil
	}))
	mux.Handle("/api/tasks/charge", tasks.Task(func(ctx context.Context, task *linkloom.Task) (any, error) {
		st.count("charge")
		var amount any = json.Number("10")
		if v, ok := task.Inputs["amount"]; ok {
			amount = v
		}
		effect := st.record("charge", map[string]any{"key": task.IdempotencyKey, "amount": amount, "run": task.RunID})
		task.Log("Charged %v", amount)
		return map[string]any{"charge_id": fmt.Sprintf("ch_%v", effect["seq"]), "amount": amount}, nil
	}))
	// docs:start go-failures
	mux.Handle("/api/tasks/fail", tasks.Task(func(ctx context.Context, task *linkloom.Task) (any, error) {
		st.count("fail")
		st.record("fail", map[string]any{"key": task.IdempotencyKey, "attempt": task.Attempt})
		return linkloom.Failed(task.String("error", "the example backend failed"), task.Bool("retryable")), nil
	}))
	mux.Handle("/api/tasks/flaky", tasks.Task(func(ctx context.Context, task *linkloom.Task) (any, error) {
		st.count("flaky")
		st.mu.Lock()
		st.deliveries[task.IdempotencyKey]++
		delivery := st.deliveries[task.IdempotencyKey]
		st.mu.Unlock()
		if delivery <= task.Int("failures", 2) {
			return nil, linkloom.RetryLater(fmt.Sprintf("flaky failure %d", delivery), 0) // 503
		}
		task.Log("Succeeded on delivery %d", delivery)
		return map[string]any{"deliveries": delivery}, nil
	}))
	// docs:end go-failures
	// docs:start go-async
	mux.Handle("/api/tasks/slow-report", tasks.AsyncTask(func(ctx context.Context, task *linkloom.Task) (any, error) {
		st.count("slow-report")
		seconds := task.Float("seconds", 2)
		pages := task.Int("pages", 3)
		if pages < 1 {
			pages = 1
		}
		for page := 1; page <= pages; page++ {
			time.Sleep(time.Duration(seconds / float64(pages) * float64(time.Second)))
			task.Log("Rendered page %d/%d", page, pages)
		}
		return map[string]any{"report": "report-" + task.RunID, "pages": pages}, nil
	}))
	// docs:end go-async
	mux.HandleFunc("/stats", func(w http.ResponseWriter, r *http.Request) {
		st.mu.Lock()
		defer st.mu.Unlock()
		writeJSON(w, map[string]any{"calls": st.calls})
	})
	mux.HandleFunc("/effects", func(w http.ResponseWriter, r *http.Request) {
		st.mu.Lock()
		defer st.mu.Unlock()
		kind := r.URL.Query().Get("kind")
		out := []map[string]any{}
		for _, e := range st.effects {
			if kind == "" || e["kind"] == kind {
				out = append(out, e)
			}
		}
		writeJSON(w, map[string]any{"effects": out})
	})
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, map[string]any{"status": "ok"})
	})
	server := &http.Server{Addr: fmt.Sprintf("127.0.0.1:%d", port), Handler: mux}
	go func() {
		<-ctx.Done()
		server.Shutdown(context.Background())
	}()
	log.Printf("example backend (Go) listening on http://%s", server.Addr)
	if err := server.ListenAndServe(); err != nil && err != http.ErrServerClosed {
		log.Fatal(err)
	}
	tasks.Wait()
}

func runWorker(ctx context.Context) {
	concurrency, _ := strconv.Atoi(envOr("LOOM_WORKER_CONCURRENCY", "4"))
	// docs:start go-worker
	worker, err := linkloom.NewWorker(linkloom.WorkerOptions{
		ServerURL:   envOr("LOOM_SERVER_URL", "http://127.0.0.1:8080"),
		Token:       os.Getenv("LOOM_TOKEN"),
		Queues:      strings.Split(envOr("LOOM_WORKER_QUEUES", "reports"), ","),
		WorkerID:    os.Getenv("LOOM_WORKER_ID"),
		Concurrency: concurrency,
		PollWait:    2 * time.Second,
	})
	if err != nil {
		log.Fatal(err)
	}
	worker.Handle("square", func(ctx context.Context, job *linkloom.Job) (any, error) {
		fmt.Printf("task started key=%s deliveries=%d\n", job.IdempotencyKey, job.Deliveries)
		payload, _ := job.Payload.(map[string]any)
		seconds, _ := strconv.ParseFloat(fmt.Sprint(payload["seconds"]), 64)
		time.Sleep(time.Duration(seconds * float64(time.Second)))
		n, _ := strconv.Atoi(fmt.Sprint(payload["n"]))
		job.Log("squared %d", n)
		return map[string]any{"square": n * n, "deliveries": job.Deliveries, "worker": worker.ID}, nil
	})
	worker.Run(ctx) // until SIGINT/SIGTERM: running tasks report, then it deregisters
	// docs:end go-worker
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

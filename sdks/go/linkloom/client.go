package linkloom

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Client is a client of the Link Loom REST API (/api/v1, bearer token).
type Client struct {
	BaseURL string
	Token   string
	HTTP    *http.Client
}

// NewClient returns a client of the server at serverURL.
func NewClient(serverURL, token string) *Client {
	return &Client{BaseURL: strings.TrimRight(serverURL, "/") + "/api/v1", Token: token, HTTP: &http.Client{Timeout: 30 * time.Second}}
}

// APIError is the server's RFC 9457 problem: Status, its stable Code and Detail (what to do).
type APIError struct {
	Status int
	Code   string
	Detail string
}

func (e *APIError) Error() string { return fmt.Sprintf("%d %s: %s", e.Status, e.Code, e.Detail) }

// Run is a run as the API answers it.
type Run struct {
	ID          string         `json:"id"`
	FlowID      string         `json:"flow_id"`
	FlowVersion int            `json:"flow_version"`
	Status      string         `json:"status"`
	Inputs      map[string]any `json:"inputs"`
	Outputs     any            `json:"outputs"`
	Error       any            `json:"error"`
	Steps       []StepRun      `json:"steps"`
}

// StepRun is one step of a run.
type StepRun struct {
	StepID  string         `json:"step_id"`
	Status  string         `json:"status"`
	Attempt int            `json:"attempt"`
	Index   *int           `json:"index"`
	Output  any            `json:"output"`
	Outputs map[string]any `json:"outputs"`
	Error   map[string]any `json:"error"`
	Logs    []string       `json:"logs"`
}

// Done is true once the run can change no more.
func (r *Run) Done() bool {
	return r.Status == "SUCCEEDED" || r.Status == "FAILED" || r.Status == "CANCELLED"
}

// PutFlow applies a spec (a map, or YAML/JSON text) as the flow's new version (admin).
func (c *Client) PutFlow(ctx context.Context, flowID string, spec any) (map[string]any, error) {
	var out map[string]any
	err := c.do(ctx, http.MethodPut, "/flows/"+url.PathEscape(flowID), map[string]any{"spec": spec}, &out)
	return out, err
}

// Trigger starts a run of flowID with inputs.
func (c *Client) Trigger(ctx context.Context, flowID string, inputs map[string]any) (*Run, error) {
	var run Run
	err := c.do(ctx, http.MethodPost, "/flows/"+url.PathEscape(flowID)+"/runs", map[string]any{"inputs": inputs}, &run)
	return &run, err
}

// GetRun reads a run with its steps and their logs.
func (c *Client) GetRun(ctx context.Context, runID string) (*Run, error) {
	var run Run
	err := c.do(ctx, http.MethodGet, "/runs/"+url.PathEscape(runID), nil, &run)
	return &run, err
}

// WaitForRun polls until the run ended or ctx ends.
func (c *Client) WaitForRun(ctx context.Context, runID string, every time.Duration) (*Run, error) {
	for {
		run, err := c.GetRun(ctx, runID)
		if err != nil || run.Done() {
			return run, err
		}
		if !sleepCtx(ctx, every) {
			return run, ctx.Err()
		}
	}
}

// CancelRun cancels a running run.
func (c *Client) CancelRun(ctx context.Context, runID string) (*Run, error) {
	var run Run
	err := c.do(ctx, http.MethodPost, "/runs/"+url.PathEscape(runID)+"/cancel", nil, &run)
	return &run, err
}

func (c *Client) do(ctx context.Context, method, path string, body, into any) error {
	var reader io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			return err
		}
		reader = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.BaseURL+path, reader)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		var problem struct{ Code, Detail, Title string }
		json.Unmarshal(data, &problem)
		if problem.Detail == "" {
			problem.Detail = first(problem.Title, strings.TrimSpace(string(data)))
		}
		return &APIError{Status: resp.StatusCode, Code: first(problem.Code, "api_error"), Detail: problem.Detail}
	}
	if into != nil && len(data) > 0 {
		return json.Unmarshal(data, into)
	}
	return nil
}

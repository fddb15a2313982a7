/**
 * A typed client of the Link Loom REST API (`/api/v1`, bearer token), on `fetch`.
 *
 *     const loom = new Client({ serverUrl: "http://127.0.0.1:8080", token: process.env.LOOM_TOKEN });
 *     const run = await loom.trigger("daily-report", { count: 5 }, { wait: true });
 */
import { sleep } from "./callbacks.js";
import type { Json, JsonObject } from "./tasks.js";

export interface StepRun {
  step_id: string;
  status: string;
  attempt: number;
  index: number | null;
  output: Json;
  outputs: JsonObject | null;
  error: JsonObject | null;
  logs: string[];
}

export interface Run {
  id: string;
  flow_id: string;
  flow_version: number;
  status: "PENDING" | "RUNNING" | "SUCCEEDED" | "FAILED" | "CANCELLED";
  inputs: JsonObject;
  outputs: Json;
  error: Json;
  steps?: StepRun[];
}

export interface FlowVersion {
  flow_id: string;
  version: number;
  created: boolean;
}

/** The server refused the request: `status`, its stable `code` and `detail` (what to do). */
export class LinkloomApiError extends Error {
  override name = "LinkloomApiError";
  constructor(
    readonly status: number,
    readonly code: string,
    readonly detail: string,
  ) {
    super(`${status} ${code}: ${detail}`);
  }
}

const FINAL = new Set(["SUCCEEDED", "FAILED", "CANCELLED"]);

export class Client {
  private readonly base: string;
  private readonly headers: Record<string, string>;

  constructor(options: { serverUrl: string; token?: string }) {
    this.base = options.serverUrl.replace(/\/+$/, "") + "/api/v1";
    this.headers = { "Content-Type": "application/json" };
    if (options.token) this.headers.Authorization = `Bearer ${options.token}`;
  }

  async listFlows(): Promise<JsonObject[]> {
    return ((await this.request("GET", "/flows")) as { items: JsonObject[] }).items;
  }

  /** Apply a spec (an object, or YAML/JSON text) as the flow's new version (admin). */
  async putFlow(flowId: string, spec: JsonObject | string): Promise<FlowVersion> {
    return (await this.request("PUT", `/flows/${enc(flowId)}`, { spec })) as FlowVersion;
  }

  /** Start a run; with `wait` resolve once it ended (`timeoutSeconds`, default 300). */
  async trigger(flowId: string, inputs: JsonObject = {}, options: { wait?: boolean; timeoutSeconds?: number } = {}): Promise<Run> {
    const run = (await this.request("POST", `/flows/${enc(flowId)}/runs`, { inputs })) as Run;
    return options.wait ? this.waitForRun(run.id, options.timeoutSeconds) : run;
  }

  async getRun(runId: string): Promise<Run> {
    return (await this.request("GET", `/runs/${enc(runId)}`)) as Run;
  }

  async waitForRun(runId: string, timeoutSeconds = 300, pollSeconds = 0.5): Promise<Run> {
    const deadline = Date.now() + timeoutSeconds * 1000;
    for (;;) {
      const run = await this.getRun(runId);
      if (FINAL.has(run.status)) return run;
      if (Date.now() > deadline) throw new Error(`run ${runId} is still ${run.status} after ${timeoutSeconds}s`);
      await sleep(pollSeconds);
    }
  }

  async cancelRun(runId: string): Promise<Run> {
    return (await this.request("POST", `/runs/${enc(runId)}/cancel`)) as Run;
  }

  async retryRun(runId: string): Promise<Run> {
    return (await this.request("POST", `/runs/${enc(runId)}/retry`)) as Run;
  }

  private async request(method: string, path: string, body?: unknown): Promise<unknown> {
    const response = await fetch(this.base + path, {
      method,
      headers: this.headers,
      body: body === undefined ? null : JSON.stringify(body),
    });
    const text = await response.text();
    const data: unknown = text ? JSON.parse(text) : null;
    if (!response.ok) {
      const problem = (data ?? {}) as { code?: string; detail?: string; title?: string };
      throw new LinkloomApiError(response.status, problem.code ?? "api_error", problem.detail ?? problem.title ?? text);
    }
    return data;
  }
}

function enc(segment: string): string {
  return encodeURIComponent(segment);
}

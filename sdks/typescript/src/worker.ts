/**
 * `Worker`: runs `type: task` steps in a process the server cannot reach (pull mode,
 * docs/protocol.md section 3).
 *
 *     const worker = new Worker({ serverUrl, token, queues: ["reports"] });
 *     worker.task("build-report", async (job) => { job.log("building"); return { rows: 42 }; });
 *     await worker.run();   // until worker.stop()
 *
 * It registers, long-polls its queues, runs each task's handler, heartbeats every
 * `heartbeat_interval` while tasks run, reports `{status, output, logs, error}`, and on
 * `stop()` lets running tasks report, then deregisters. Delivery is at least once: a task whose
 * worker died is handed out again with the same `idempotencyKey` (`deliveries` > 1).
 */
import { hostname } from "node:os";
import { randomBytes } from "node:crypto";

import { sleep } from "./callbacks.js";
import { Retryable, TaskResult, type Json, type JsonObject } from "./tasks.js";

/** One task attempt handed to a handler. */
export class Job {
  readonly logs: string[] = [];
  constructor(
    readonly token: string,
    readonly task: string,
    readonly queue: string,
    readonly payload: Json,
    readonly inputs: JsonObject,
    readonly upstream: JsonObject,
    readonly runId: string,
    readonly flowId: string,
    readonly stepId: string,
    readonly attempt: number,
    readonly idempotencyKey: string,
    readonly item: Json,
    readonly index: number | null,
    readonly deliveries: number,
  ) {}

  log(message: string): void {
    this.logs.push(String(message));
  }

  static fromTask(data: JsonObject): Job {
    const env = (data.envelope ?? {}) as JsonObject;
    return new Job(
      String(data.token), String(data.task), String(data.queue), env.payload ?? null,
      (env.inputs ?? {}) as JsonObject, (env.upstream ?? {}) as JsonObject,
      String(env.run_id ?? ""), String(env.flow_id ?? ""), String(env.step_id ?? ""),
      Number(env.attempt ?? 0), String(env.idempotency_key ?? ""), env.item ?? null,
      typeof env.index === "number" ? env.index : null, Number(data.deliveries ?? 1),
    );
  }
}

export type JobHandler = (job: Job) => unknown;

export interface WorkerOptions {
  serverUrl: string;
  /** An API token with the `author` role. */
  token?: string;
  queues: string[];
  workerId?: string;
  concurrency?: number;
  version?: string;
  /** Long-poll wait, seconds (default 10; the server caps it). */
  pollWaitSeconds?: number;
}

export class Worker {
  readonly workerId: string;
  readonly queues: string[];
  private readonly api: string;
  private readonly headers: Record<string, string>;
  private readonly concurrency: number;
  private readonly version: string;
  private readonly pollWait: number;
  private readonly handlers = new Map<string, JobHandler>();
  private readonly inflight = new Map<string, Promise<void>>();
  private heartbeatSeconds = 10;
  private stopping = false;
  private wake: (() => void) | null = null;
  private poll: AbortController | null = null;

  constructor(options: WorkerOptions) {
    if (options.queues.length === 0) throw new Error("a worker needs at least one queue");
    this.api = options.serverUrl.replace(/\/+$/, "") + "/api/v1";
    this.queues = [...options.queues];
    this.workerId = options.workerId ?? `${hostname()}-${randomBytes(4).toString("hex")}`;
    this.concurrency = Math.max(1, options.concurrency ?? 4);
    this.version = options.version ?? "ts-0.1.0";
    this.pollWait = options.pollWaitSeconds ?? 10;
    this.headers = { "Content-Type": "application/json", "User-Agent": `loom-worker-ts/${this.version}` };
    if (options.token) this.headers.Authorization = `Bearer ${options.token}`;
  }

  /** Register `handler` for task `name`. */
  task(name: string, handler: JobHandler): this {
    this.handlers.set(name, handler);
    return this;
  }

  /** Register, then poll and run tasks until `stop()`; resolves once deregistered. */
  async run(): Promise<void> {
    await this.register();
    const beats = this.heartbeats();
    let failures = 0;
    while (!this.stopping) {
      const free = this.concurrency - this.inflight.size;
      if (free <= 0) {
        await new Promise<void>((resolve) => (this.wake = resolve));
        continue;
      }
      let tasks: JsonObject[];
      try {
        this.poll = new AbortController();
        const response = await this.call("POST", "/queues/poll", {
          worker_id: this.workerId, queues: this.queues, max_tasks: free, wait: this.pollWait,
        }, this.poll.signal);
        if (response.status === 404) {
          await this.register();
          continue;
        }
        if (!response.ok) throw new Error(`poll answered HTTP ${response.status}`);
        tasks = ((await response.json()) as { tasks: JsonObject[] }).tasks;
        failures = 0;
      } catch (error) {
        if (this.stopping) break;
        failures += 1;
        const delay = Math.min(30, 0.5 * 2 ** Math.min(failures, 6));
        console.warn(`poll failed (${(error as Error).message}); retrying in ${delay}s`);
        await sleep(delay);
        continue;
      }
      for (const data of tasks) {
        const job = Job.fromTask(data);
        const running = this.execute(job).finally(() => {
          this.inflight.delete(job.token);
          this.wake?.();
        });
        this.inflight.set(job.token, running);
      }
    }
    await Promise.allSettled([...this.inflight.values()]);
    this.stopping = true;
    await beats;
    try {
      await this.call("DELETE", `/workers/${encodeURIComponent(this.workerId)}`);
    } catch {
      // the server will mark it lost instead
    }
  }

  /** Stop polling; running tasks finish and report, then `run()` resolves. */
  stop(): void {
    this.stopping = true;
    this.poll?.abort();
    this.wake?.();
  }

  private async register(): Promise<void> {
    for (let n = 0; ; n++) {
      try {
        const response = await this.call("POST", "/workers", {
          id: this.workerId, host: hostname(), queues: this.queues, version: this.version,
        });
        if (response.ok) {
          const data = (await response.json()) as { heartbeat_interval?: number };
          this.heartbeatSeconds = Number(data.heartbeat_interval ?? 10);
          return;
        }
        if (response.status < 500) throw new Error(`registration refused: HTTP ${response.status} ${await response.text()}`);
      } catch (error) {
        if ((error as Error).message.startsWith("registration refused")) throw error;
        console.warn(`worker registration failed (${(error as Error).message}); retrying`);
      }
      await sleep(Math.min(30, 0.5 * 2 ** Math.min(n, 6)));
    }
  }

  private async execute(job: Job): Promise<void> {
    const handler = this.handlers.get(job.task);
    let result: JsonObject;
    if (handler === undefined) {
      result = { status: "FAILED", error: `this worker has no handler for task '${job.task}'`, logs: job.logs };
    } else {
      try {
        result = TaskResult.from(await handler(job)).toWire(job.logs);
      } catch (error) {
        const err = error instanceof Error ? error : new Error(String(error));
        result =
          error instanceof Retryable
            ? { status: "FAILED", error: err.message, logs: job.logs, retryable: true }
            : { status: "FAILED", error: `${err.name}: ${err.message}`, logs: job.logs };
      }
    }
    await this.report(job, result);
  }

  private async report(job: Job, result: JsonObject): Promise<void> {
    for (let n = 0; n < 8; n++) {
      try {
        const response = await this.call("POST", `/tasks/${encodeURIComponent(job.token)}/result`, {
          worker_id: this.workerId, ...result,
        });
        if (response.status === 404 || response.status === 409) return; // a redelivery won, or the attempt ended
        if (response.ok) return;
        if (response.status < 500) {
          console.error(`result of ${job.task} refused: HTTP ${response.status} ${await response.text()}`);
          return;
        }
      } catch (error) {
        console.warn(`reporting ${job.task} failed (${(error as Error).message}); retrying`);
      }
      await sleep(Math.min(30, 0.5 * 2 ** n));
    }
  }

  private async heartbeats(): Promise<void> {
    let next = Date.now() + this.heartbeatSeconds * 1000;
    while (!this.stopping || this.inflight.size > 0) {
      await sleep(0.05);
      if (Date.now() < next) continue;
      next = Date.now() + this.heartbeatSeconds * 1000;
      try {
        const response = await this.call("POST", `/workers/${encodeURIComponent(this.workerId)}/heartbeat`, {
          tasks: [...this.inflight.keys()],
        });
        if (response.status === 404 && !this.stopping) await this.register();
      } catch (error) {
        console.warn(`heartbeat failed: ${(error as Error).message}`);
      }
    }
  }

  private async call(method: string, path: string, body?: unknown, signal?: AbortSignal): Promise<Response> {
    const response = await fetch(this.api + path, {
      method,
      headers: this.headers,
      body: body === undefined ? null : JSON.stringify(body),
      signal: signal ?? AbortSignal.timeout(30_000),
    });
    return response;
  }
}

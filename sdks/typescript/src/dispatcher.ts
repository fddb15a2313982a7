/**
 * Framework-neutral handling of task deliveries (docs/protocol.md); the node:http and Express
 * adapters wrap it. For each delivery: verify the signature (401), parse (400), de-duplicate by
 * `Idempotency-Key` (a stored reply is repeated; a key still in progress gets 503), run the
 * handler and map its outcome:
 *
 * - a value → 200 `{"status": "SUCCESS", "output": value, "logs": [...]}`
 * - a `TaskResult` → 200 with its status (FAILED may carry `"retryable": true`)
 * - `Retryable` thrown → 503 with `Retry-After` and `{"status": "FAILED", "retryable": true}`
 * - any other error → 200 `{"status": "FAILED", "error": "<Name>: <message>"}`
 * - `Deferred` returned, or an `async` route on a `mode: async` step → 202 now; the work runs in
 *   the background with heartbeats and its result goes to the callback URL.
 *
 * Only SUCCESS replies are stored: a failed attempt is retried with the same key and must run.
 */
import { CallbackSender, sleep } from "./callbacks.js";
import type { IdempotencyStore, Reply } from "./idempotency.js";
import { DEFAULT_TOLERANCE_SECONDS, SignatureError, verify, type Headers } from "./signing.js";
import { BadTaskRequest, Deferred, Retryable, TaskRequest, TaskResult } from "./tasks.js";

export type TaskHandler = (task: TaskRequest) => unknown;

export interface TaskRoute {
  handler: TaskHandler;
  /** On a `mode: async` step: answer 202 at once and run the handler in the background. */
  async?: boolean;
}

export interface DispatcherOptions {
  /** The server's `security.signing_key`. Required unless `verifySignatures` is false. */
  signingKey?: string;
  /** Accept unsigned deliveries: for local development only. */
  verifySignatures?: boolean;
  toleranceSeconds?: number;
  idempotency?: IdempotencyStore;
  /** A claim older than this is abandoned (default 300 s; async work: 3600 s). */
  claimTtlSeconds?: number;
  asyncClaimTtlSeconds?: number;
  /** Heartbeats of background work, seconds (default 10). */
  heartbeatSeconds?: number;
  callbacks?: CallbackSender;
}

export const ACCEPTED = { status: "ACCEPTED" };

export class TaskDispatcher {
  readonly signingKey: string;
  readonly verifySignatures: boolean;
  readonly tolerance: number;
  readonly idempotency: IdempotencyStore | null;
  readonly claimTtl: number;
  readonly asyncClaimTtl: number;
  readonly heartbeatSeconds: number;
  readonly callbacks: CallbackSender;
  private readonly background = new Set<Promise<void>>();

  constructor(options: DispatcherOptions) {
    this.verifySignatures = options.verifySignatures ?? true;
    if (this.verifySignatures && !options.signingKey) {
      throw new Error(
        "pass signingKey (the server's LOOM_SECURITY__SIGNING_KEY), or verifySignatures: false for local development only",
      );
    }
    if (!this.verifySignatures) {
      console.warn("loom_signature_verification_disabled: accepting unsigned tasks (development only)");
    }
    this.signingKey = options.signingKey ?? "";
    this.tolerance = options.toleranceSeconds ?? DEFAULT_TOLERANCE_SECONDS;
    this.idempotency = options.idempotency ?? null;
    this.claimTtl = options.claimTtlSeconds ?? 300;
    this.asyncClaimTtl = options.asyncClaimTtlSeconds ?? 3600;
    this.heartbeatSeconds = options.heartbeatSeconds ?? 10;
    this.callbacks = options.callbacks ?? new CallbackSender(this.signingKey);
  }

  /** Handle one delivery: the raw body as received and its headers. */
  async dispatch(route: TaskRoute, body: Uint8Array, headers: Headers): Promise<Reply> {
    const admitted = await this.admit(route, body, headers);
    if (!(admitted instanceof TaskRequest)) return admitted;
    const task = admitted;
    if (route.async && task.isAsync) return this.defer(task, route.handler);
    let value: unknown;
    try {
      value = await route.handler(task);
      if (value instanceof Deferred) {
        if (value.work === null || task.isAsync) return this.defer(task, value.work);
        value = await value.work(task);
      }
    } catch (error) {
      return this.fail(task, error);
    }
    return this.finish(task, TaskResult.from(value));
  }

  /** Wait for background work (async steps) to finish: for tests and shutdown. */
  async drain(): Promise<void> {
    while (this.background.size > 0) await Promise.allSettled([...this.background]);
  }

  private async admit(route: TaskRoute, body: Uint8Array, headers: Headers): Promise<TaskRequest | Reply> {
    if (this.verifySignatures) {
      try {
        verify(this.signingKey, body, headers, { toleranceSeconds: this.tolerance });
      } catch (error) {
        if (!(error instanceof SignatureError)) throw error;
        console.warn(`loom_task_rejected: ${error.message}`);
        return errorReply(401, "invalid_signature", `invalid signature: ${error.message}`);
      }
    }
    let task: TaskRequest;
    try {
      task = TaskRequest.fromHttp(body, headers);
    } catch (error) {
      if (error instanceof BadTaskRequest) return errorReply(400, "bad_request", error.message);
      throw error;
    }
    const key = task.idempotencyKey;
    const store = this.idempotency;
    if (store !== null && key) {
      const stored = await store.get(key);
      if (stored !== null) return replay(stored);
      if (!(await store.claim(key, route.async ? this.asyncClaimTtl : this.claimTtl))) {
        const finished = await store.get(key); // it may have finished in between
        if (finished !== null) return replay(finished);
        const reply = errorReply(
          503,
          "in_progress",
          `a delivery with Idempotency-Key '${key}' is still being processed; retry later`,
        );
        return { ...reply, headers: { "Retry-After": "5" } };
      }
    }
    return task;
  }

  private async finish(task: TaskRequest, result: TaskResult): Promise<Reply> {
    const reply: Reply = { status: 200, body: result.toWire(task.logs) };
    await this.remember(task, result, reply);
    return reply;
  }

  private async fail(task: TaskRequest, error: unknown): Promise<Reply> {
    if (error instanceof Retryable) {
      await this.forget(task);
      const headers: Record<string, string> = {};
      if (error.retryAfterSeconds !== null) {
        headers["Retry-After"] = String(Math.max(0, Math.ceil(error.retryAfterSeconds)));
      }
      const body = TaskResult.failed(error.message, { retryable: true }).toWire(task.logs);
      return { status: 503, body, headers };
    }
    return this.finish(task, failure(task, error));
  }

  private async remember(task: TaskRequest, result: TaskResult, reply: Reply): Promise<void> {
    if (this.idempotency === null || !task.idempotencyKey) return;
    if (result.status === "SUCCESS") await this.idempotency.put(task.idempotencyKey, reply);
    else await this.idempotency.release(task.idempotencyKey);
  }

  private async forget(task: TaskRequest): Promise<void> {
    if (this.idempotency !== null && task.idempotencyKey) await this.idempotency.release(task.idempotencyKey);
  }

  private async defer(task: TaskRequest, work: ((task: TaskRequest) => unknown) | null): Promise<Reply> {
    if (!task.isAsync) {
      await this.forget(task);
      return errorReply(
        500,
        "not_async",
        "the handler deferred its work but the step is not 'mode: async' (no callback URL); declare mode: async in the flow",
      );
    }
    const accepted: Reply = { status: 202, body: { ...ACCEPTED } };
    if (work === null) {
      // The application posts the result itself; a re-delivery must not start it twice.
      if (this.idempotency !== null && task.idempotencyKey) await this.idempotency.put(task.idempotencyKey, accepted);
      return accepted;
    }
    const job = this.completeLater(task, work).catch((error: unknown) => {
      console.error(`loom_background_task_crashed: ${String(error)}`);
    });
    this.background.add(job);
    void job.finally(() => this.background.delete(job));
    return accepted;
  }

  private async completeLater(task: TaskRequest, work: (task: TaskRequest) => unknown): Promise<void> {
    let working = true;
    const beats = task.heartbeatUrl === null ? Promise.resolve() : this.heartbeats(task.heartbeatUrl, () => working);
    let result: TaskResult;
    try {
      result = TaskResult.from(await work(task));
    } catch (error) {
      result =
        error instanceof Retryable ? TaskResult.failed(error.message, { retryable: true }) : failure(task, error);
    } finally {
      working = false;
    }
    await beats;
    const outcome = await this.callbacks.complete(task.callbackUrl ?? "", result, task.logs);
    if (outcome === "delivered" || outcome === "already_completed") {
      await this.remember(task, result, { status: 200, body: result.toWire(task.logs) });
    } else {
      await this.forget(task);
    }
  }

  private async heartbeats(url: string, working: () => boolean): Promise<void> {
    // Sleep in small slices so the loop ends soon after the work does.
    let next = Date.now() + this.heartbeatSeconds * 1000;
    while (working()) {
      await sleep(Math.min(0.05, this.heartbeatSeconds));
      if (!working() || Date.now() < next) continue;
      const outcome = await this.callbacks.heartbeat(url);
      next = Date.now() + this.heartbeatSeconds * 1000;
      if (outcome === "already_completed" || outcome === "rejected") {
        console.warn(`loom_heartbeat_refused: the attempt is over (${outcome})`);
        return;
      }
    }
  }
}

function replay(stored: Reply): Reply {
  return { ...stored, headers: { ...(stored.headers ?? {}), "X-Loom-Idempotent-Replay": "true" } };
}

function failure(task: TaskRequest, error: unknown): TaskResult {
  const err = error instanceof Error ? error : new Error(String(error));
  console.error(`loom_task_failed: step ${task.stepId} of run ${task.runId}: ${err.stack ?? err.message}`);
  return TaskResult.failed(`${err.name}: ${err.message || "no message"}`);
}

export function errorReply(status: number, code: string, message: string): Reply {
  return { status, body: { status: "FAILED", error: message, code } };
}

/**
 * What a task handler sees and returns: `TaskRequest`, `TaskResult`, `Retryable`, `Deferred`.
 *
 * Wire format (docs/protocol.md): the server POSTs the task envelope, or the step's own body with
 * the metadata only in `X-Loom-*` headers; the backend answers
 * `{"status": "SUCCESS"|"FAILED", "output", "logs", "error", "retryable"}`.
 */
import { header, type Headers } from "./signing.js";

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
export type JsonObject = { [key: string]: Json };

/** The body is not JSON. */
export class BadTaskRequest extends Error {
  override name = "BadTaskRequest";
}

/** One delivery of a step, parsed from the envelope and the `X-Loom-*` headers. */
export class TaskRequest {
  readonly logs: string[] = [];

  constructor(
    readonly runId: string | null,
    readonly flowId: string | null,
    readonly flowVersion: number | null,
    readonly stepId: string | null,
    readonly attempt: number,
    readonly idempotencyKey: string | null,
    readonly inputs: JsonObject,
    readonly upstream: Record<string, { output: Json; outputs: JsonObject }>,
    readonly item: Json,
    readonly index: number | null,
    readonly callbackUrl: string | null,
    readonly heartbeatUrl: string | null,
    /** The parsed body as sent: the envelope, or the step's own body. */
    readonly body: Json,
    /** Lower-cased request headers. */
    readonly headers: Record<string, string>,
    /** False when the flow declared its own body (the metadata came from the headers). */
    readonly isEnvelope: boolean,
  ) {}

  /** True when the server waits for a callback (the step is `mode: async`). */
  get isAsync(): boolean {
    return this.callbackUrl !== null;
  }

  /** Add a log line; the lines are returned to the server with the result. */
  log(message: string): void {
    this.logs.push(String(message));
  }

  /** The `output` of an upstream step. */
  outputOf(stepId: string): Json {
    const up = this.upstream[stepId];
    if (up === undefined) {
      const known = Object.keys(this.upstream).sort().join(", ") || "none";
      throw new Error(`no upstream step '${stepId}' in this task (upstream steps: ${known})`);
    }
    return up.output;
  }

  /** Parse a delivery. Throws `BadTaskRequest` when the body is not JSON. */
  static fromHttp(body: Uint8Array, headers: Headers): TaskRequest {
    const lower: Record<string, string> = {};
    for (const key of Object.keys(headers)) {
      const value = header(headers, key);
      if (value !== undefined) lower[key.toLowerCase()] = value;
    }
    const text = Buffer.from(body).toString("utf8");
    let data: Json = null;
    if (text.trim()) {
      try {
        data = JSON.parse(text) as Json;
      } catch (error) {
        throw new BadTaskRequest(`the request body is not JSON: ${(error as Error).message}`);
      }
    }
    const envelope = isObject(data) && "run_id" in data && "step_id" in data;
    const env: JsonObject = envelope ? (data as JsonObject) : {};
    const callback = isObject(env.callback) ? env.callback : {};
    const upstream: Record<string, { output: Json; outputs: JsonObject }> = {};
    if (isObject(env.upstream)) {
      for (const [id, value] of Object.entries(env.upstream)) {
        upstream[id] = isObject(value)
          ? { output: value.output ?? null, outputs: isObject(value.outputs) ? value.outputs : {} }
          : { output: value, outputs: {} };
      }
    }
    return new TaskRequest(
      str(env.run_id) ?? lower["x-loom-run-id"] ?? null,
      str(env.flow_id) ?? lower["x-loom-flow-id"] ?? null,
      int(env.flow_version) ?? int(lower["x-loom-flow-version"]) ?? null,
      str(env.step_id) ?? lower["x-loom-step-id"] ?? null,
      int(env.attempt) ?? int(lower["x-loom-attempt"]) ?? 1,
      // The envelope's key is signed with the body; the header is not (a replay could change it).
      str(env.idempotency_key) || lower["idempotency-key"] || null,
      isObject(env.inputs) ? env.inputs : {},
      upstream,
      env.item ?? null,
      int(env.index) ?? null,
      str(callback.url) ?? lower["x-loom-callback-url"] ?? null,
      str(callback.heartbeat_url) ?? lower["x-loom-heartbeat-url"] ?? null,
      data,
      lower,
      envelope,
    );
  }
}

/** A result with full control of the reply. A plain returned value means SUCCESS. */
export class TaskResult {
  private constructor(
    readonly status: "SUCCESS" | "FAILED",
    readonly output: unknown,
    readonly error: string | null,
    readonly logs: string[],
    readonly retryable: boolean,
  ) {}

  static success(output?: unknown, options: { logs?: string[] } = {}): TaskResult {
    return new TaskResult("SUCCESS", output ?? null, null, options.logs ?? [], false);
  }

  /** A failure; `retryable: true` lets the server retry it under the step's policy. */
  static failed(
    error: string,
    options: { output?: unknown; logs?: string[]; retryable?: boolean } = {},
  ): TaskResult {
    return new TaskResult("FAILED", options.output ?? null, error, options.logs ?? [], options.retryable ?? false);
  }

  /** The JSON reply: the request's log lines first, then the result's own. */
  toWire(extraLogs: string[] = []): JsonObject {
    const wire: JsonObject = {
      status: this.status,
      output: toJson(this.output),
      logs: [...extraLogs, ...this.logs],
    };
    if (this.error !== null) wire.error = this.error;
    if (this.retryable && this.status === "FAILED") wire.retryable = true;
    return wire;
  }

  /**
   * A handler's return value as a result: a `TaskResult` is kept, an object already in the
   * response format is read as one, anything else is the output of a success.
   */
  static from(value: unknown): TaskResult {
    if (value instanceof TaskResult) return value;
    if (isObject(value as Json)) {
      const obj = value as JsonObject;
      const keys = Object.keys(obj);
      const allowed = ["status", "output", "logs", "error", "retryable"];
      if ((obj.status === "SUCCESS" || obj.status === "FAILED") && keys.every((k) => allowed.includes(k))) {
        const logs = Array.isArray(obj.logs) ? obj.logs.map(String) : [];
        return obj.status === "SUCCESS"
          ? TaskResult.success(obj.output ?? null, { logs })
          : TaskResult.failed(String(obj.error ?? "FAILED"), { output: obj.output ?? null, logs, retryable: obj.retryable === true });
      }
    }
    return TaskResult.success(value);
  }
}

/** Throw from a handler when the work may succeed later: the reply is 503 with `Retry-After`. */
export class Retryable extends Error {
  override name = "Retryable";
  constructor(
    message = "temporarily unavailable",
    readonly retryAfterSeconds: number | null = null,
  ) {
    super(message);
  }
}

/**
 * Return from a handler to answer `202 Accepted` now and finish later. With `work`, the SDK runs
 * it in the background, heartbeats while it runs and posts its result to the callback URL.
 * Without it, the application posts the result itself (`CallbackSender.complete`).
 */
export class Deferred {
  constructor(readonly work: ((task: TaskRequest) => unknown) | null = null) {}
}

export function isObject(value: Json | undefined): value is JsonObject {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function str(value: Json | undefined): string | undefined {
  return value === undefined || value === null ? undefined : String(value);
}

function int(value: Json | undefined): number | undefined {
  if (value === undefined || value === null || typeof value === "boolean") return undefined;
  const n = Number(value);
  return Number.isInteger(n) ? n : undefined;
}

function toJson(value: unknown): Json {
  if (value === undefined) return null;
  return JSON.parse(JSON.stringify(value, (_k, v: unknown) => (typeof v === "bigint" ? v.toString() : v)) ?? "null") as Json;
}

/**
 * @linkloom/sdk: write Link Loom user backends in TypeScript/Node.js.
 *
 * - `TaskRouter` (node:http listener and Express middleware) with `TaskDispatcher` underneath:
 *   signatures, parsing, idempotency, response mapping, async steps with heartbeats and callbacks.
 * - `Worker`: pull-mode worker for `type: task` steps.
 * - `Client`: the REST API.
 * - `sign` / `verify`: the v1 signature scheme.
 *
 * The protocol is docs/protocol.md in the Link Loom repository.
 */
export { CallbackSender, type CallbackOutcome, type CallbackOptions } from "./callbacks.js";
export { Client, LinkloomApiError, type FlowVersion, type Run, type StepRun } from "./client.js";
export { TaskDispatcher, type DispatcherOptions, type TaskHandler, type TaskRoute } from "./dispatcher.js";
export { TaskRouter, MAX_BODY_BYTES } from "./http.js";
export { InMemoryIdempotencyStore, type IdempotencyStore, type Reply } from "./idempotency.js";
export { SIGNATURE_HEADER, SignatureError, TIMESTAMP_HEADER, sign, verify } from "./signing.js";
export { BadTaskRequest, Deferred, Retryable, TaskRequest, TaskResult, type Json, type JsonObject } from "./tasks.js";
export { Job, Worker, type JobHandler, type WorkerOptions } from "./worker.js";

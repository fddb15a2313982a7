import assert from "node:assert/strict";
import { test } from "node:test";

import {
  Deferred,
  InMemoryIdempotencyStore,
  Retryable,
  TaskDispatcher,
  TaskResult,
  sign,
  type TaskRequest,
} from "../src/index.js";

const KEY = "test-key";

function delivery(envelope: Record<string, unknown>, headers: Record<string, string> = {}): [Buffer, Record<string, string>] {
  const body = Buffer.from(JSON.stringify(envelope));
  const key = `${envelope.run_id as string}:${envelope.step_id as string}`;
  return [body, { "content-type": "application/json", "idempotency-key": key, ...sign(KEY, body), ...headers }];
}

const envelope = (over: Record<string, unknown> = {}) => ({
  run_id: "r1", flow_id: "f", flow_version: 2, step_id: "s", attempt: 1, idempotency_key: "r1:s",
  inputs: { n: 3 }, upstream: { up: { output: { rows: 2 }, outputs: {} } }, item: null, index: null, callback: null,
  ...over,
});

test("a returned value is a SUCCESS with the request's log lines", async () => {
  const dispatcher = new TaskDispatcher({ signingKey: KEY });
  const reply = await dispatcher.dispatch(
    { handler: (task: TaskRequest) => { task.log("hello"); return { double: (task.inputs.n as number) * 2, up: task.outputOf("up") }; } },
    ...delivery(envelope()),
  );
  assert.equal(reply.status, 200);
  assert.deepEqual(reply.body, { status: "SUCCESS", output: { double: 6, up: { rows: 2 } }, logs: ["hello"] });
});

test("a bad signature is 401 and runs no handler", async () => {
  let ran = 0;
  const dispatcher = new TaskDispatcher({ signingKey: KEY });
  const [body, headers] = delivery(envelope());
  const reply = await dispatcher.dispatch({ handler: () => ran++ }, Buffer.from(body.toString().replace("3", "4")), headers);
  assert.equal(reply.status, 401);
  assert.deepEqual((reply.body as { code: string }).code, "invalid_signature");
  assert.equal(ran, 0);
});

test("a body that is not JSON is 400", async () => {
  const dispatcher = new TaskDispatcher({ signingKey: KEY });
  const body = Buffer.from("<html>");
  const reply = await dispatcher.dispatch({ handler: () => 1 }, body, sign(KEY, body));
  assert.equal(reply.status, 400);
});

test("failures map to FAILED, retryable FAILED and 503", async () => {
  const dispatcher = new TaskDispatcher({ signingKey: KEY });
  const thrown = await dispatcher.dispatch({ handler: () => { throw new TypeError("bad input"); } }, ...delivery(envelope()));
  assert.deepEqual(thrown.body, { status: "FAILED", output: null, logs: [], error: "TypeError: bad input" });
  const result = await dispatcher.dispatch({ handler: () => TaskResult.failed("busy", { retryable: true }) }, ...delivery(envelope()));
  assert.deepEqual(result.body, { status: "FAILED", output: null, logs: [], error: "busy", retryable: true });
  const later = await dispatcher.dispatch({ handler: () => { throw new Retryable("locked", 2.2); } }, ...delivery(envelope()));
  assert.equal(later.status, 503);
  assert.equal(later.headers?.["Retry-After"], "3");
});

test("a repeated key gets the stored SUCCESS without running the handler; FAILED is not stored", async () => {
  const dispatcher = new TaskDispatcher({ signingKey: KEY, idempotency: new InMemoryIdempotencyStore() });
  let ran = 0;
  const route = { handler: () => ({ n: ++ran }) };
  const first = await dispatcher.dispatch(route, ...delivery(envelope()));
  const second = await dispatcher.dispatch(route, ...delivery(envelope()));
  assert.deepEqual(second.body, first.body);
  assert.equal(second.headers?.["X-Loom-Idempotent-Replay"], "true");
  assert.equal(ran, 1);
  let failures = 0;
  const failing = { handler: () => TaskResult.failed(`no ${++failures}`) };
  await dispatcher.dispatch(failing, ...delivery(envelope({ step_id: "f", idempotency_key: "r1:f" })));
  await dispatcher.dispatch(failing, ...delivery(envelope({ step_id: "f", idempotency_key: "r1:f" })));
  assert.equal(failures, 2);
});

test("a key still in progress gets 503 in_progress", async () => {
  const dispatcher = new TaskDispatcher({ signingKey: KEY, idempotency: new InMemoryIdempotencyStore() });
  let release: () => void = () => undefined;
  const slow = { handler: () => new Promise((resolve) => (release = () => resolve(1))) };
  const pending = dispatcher.dispatch(slow, ...delivery(envelope()));
  await new Promise((resolve) => setImmediate(resolve));
  const busy = await dispatcher.dispatch(slow, ...delivery(envelope()));
  assert.equal(busy.status, 503);
  assert.equal((busy.body as { code: string }).code, "in_progress");
  release();
  assert.equal((await pending).status, 200);
});

test("metadata comes from the headers when the step sends its own body", async () => {
  const dispatcher = new TaskDispatcher({ signingKey: KEY });
  const body = Buffer.from('{"hello":"Ada"}');
  const headers = { ...sign(KEY, body), "X-Loom-Run-Id": "r9", "X-Loom-Step-Id": "own", "X-Loom-Attempt": "2", "Idempotency-Key": "r9:own" };
  const reply = await dispatcher.dispatch({ handler: (t: TaskRequest) => [t.runId, t.stepId, t.attempt, t.idempotencyKey, t.isEnvelope, t.body] }, body, headers);
  assert.deepEqual((reply.body as { output: unknown }).output, ["r9", "own", 2, "r9:own", false, { hello: "Ada" }]);
});

test("deferring on a step that is not async is refused", async () => {
  const dispatcher = new TaskDispatcher({ signingKey: KEY });
  const reply = await dispatcher.dispatch({ handler: () => new Deferred() }, ...delivery(envelope()));
  assert.equal(reply.status, 500);
  assert.equal((reply.body as { code: string }).code, "not_async");
});

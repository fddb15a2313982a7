/**
 * The Link Loom example user backend in TypeScript: `node dist/server.js [--port 8081]`.
 *
 * It serves the daily-report flow's tasks (fetch-data → process → send-email) and the endpoints
 * the SDK conformance suite drives (tests/conformance/README.md). The signing key comes from
 * LOOM_SECURITY__SIGNING_KEY (default: the server's development key).
 */
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";

import {
  InMemoryIdempotencyStore,
  Retryable,
  TaskResult,
  TaskRouter,
  type Json,
  type JsonObject,
  type TaskRequest,
} from "@linkloom/sdk";

const DEV_SIGNING_KEY = "dev-only-signing-key-change-me";
const port = Number(argument("--port") ?? process.env.PORT ?? 8081);

const calls = new Map<string, number>();
const effects: JsonObject[] = [];
const deliveries = new Map<string, number>();

function count(name: string): void {
  calls.set(name, (calls.get(name) ?? 0) + 1);
}

function record(kind: string, fields: JsonObject): JsonObject {
  const effect = { kind, seq: effects.length + 1, ...fields };
  effects.push(effect);
  return effect;
}

// docs:start typescript-router
const router = new TaskRouter({
  signingKey: process.env.LOOM_SECURITY__SIGNING_KEY ?? DEV_SIGNING_KEY,
  idempotency: new InMemoryIdempotencyStore(),
  heartbeatSeconds: Number(process.env.LOOM_EXAMPLE_HEARTBEAT_SECONDS ?? 1),
});

router.task("/api/tasks/fetch-data", (task: TaskRequest) => {
  count("fetch-data");
  const n = Number(task.inputs.count ?? 20);
  const records = Array.from({ length: n }, (_, i) => ({ id: i, value: i * 10, valid: i % 20 !== 0 }));
  task.log(`Fetched ${n} records`);
  return { records, count: n };
});

router.task("/api/tasks/process", (task: TaskRequest) => {
  count("process");
  const fetched = task.outputOf("fetch_data") as { records: Array<{ valid: boolean }> };
  const valid = fetched.records.filter((record) => record.valid).length;
  task.log(`Processed data, ${valid} valid`);
  return { total: fetched.records.length, valid, invalid: fetched.records.length - valid };
});
// docs:end typescript-router

router.task("/api/tasks/send-email", (task: TaskRequest) => {
  count("send-email");
  const to = String(task.inputs.to ?? "admin@example.com");
  record("email", { to, key: task.idempotencyKey });
  task.log(`Email sent to ${to}`);
  return { sent: true, to };
});

router.task("/api/tasks/echo", (task: TaskRequest) => {
  count("echo");
  const headers: JsonObject = {};
  for (const [name, value] of Object.entries(task.headers)) {
    if (name.startsWith("x-loom-")) headers[name] = value;
  }
  return {
    run_id: task.runId, flow_id: task.flowId, flow_version: task.flowVersion, step_id: task.stepId,
    attempt: task.attempt, idempotency_key: task.idempotencyKey, inputs: task.inputs,
    upstream: task.upstream, item: task.item, index: task.index,
    body: task.isEnvelope ? null : task.body, headers,
  };
});

router.task("/api/tasks/charge", (task: TaskRequest) => {
  count("charge");
  const source = (task.isEnvelope ? task.inputs : task.body) as JsonObject | null;
  const amount = source?.amount ?? 10;
  const effect = record("charge", { key: task.idempotencyKey, amount, run: task.runId });
  task.log(`Charged ${String(amount)}`);
  return { charge_id: `ch_${String(effect.seq)}`, amount };
});

// docs:start typescript-failures
router.task("/api/tasks/fail", (task: TaskRequest) => {
  count("fail");
  record("fail", { key: task.idempotencyKey, attempt: task.attempt });
  const error = String(task.inputs.error ?? "the example backend failed");
  return TaskResult.failed(error, { retryable: task.inputs.retryable === true });
});

router.task("/api/tasks/flaky", (task: TaskRequest) => {
  count("flaky");
  const key = task.idempotencyKey ?? "-";
  const delivery = (deliveries.get(key) ?? 0) + 1;
  deliveries.set(key, delivery);
  if (delivery <= Number(task.inputs.failures ?? 2)) {
    throw new Retryable(`flaky failure ${delivery}`, 0); // 503 + Retry-After: 0
  }
  task.log(`Succeeded on delivery ${delivery}`);
  return { deliveries: delivery };
});
// docs:end typescript-failures

// docs:start typescript-async
router.task(
  "/api/tasks/slow-report",
  async (task: TaskRequest) => {
    count("slow-report");
    const seconds = Number(task.inputs.seconds ?? 2);
    const pages = Math.max(1, Math.floor(Number(task.inputs.pages ?? 3)));
    for (let page = 1; page <= pages; page++) {
      await new Promise((resolve) => setTimeout(resolve, (seconds * 1000) / pages));
      task.log(`Rendered page ${page}/${pages}`);
    }
    return { report: `report-${task.runId ?? ""}`, pages };
  },
  { async: true }, // mode: async steps get 202 now; heartbeats, then the signed callback
);
// docs:end typescript-async

function plain(req: IncomingMessage, res: ServerResponse): void {
  const url = new URL(req.url ?? "/", "http://localhost");
  let body: Json;
  if (url.pathname === "/stats") body = { calls: Object.fromEntries(calls) };
  else if (url.pathname === "/effects") {
    const kind = url.searchParams.get("kind");
    body = { effects: effects.filter((e) => kind === null || e.kind === kind) };
  } else if (url.pathname === "/healthz") body = { status: "ok" };
  else {
    res.writeHead(404, { "Content-Type": "application/json" }).end(JSON.stringify({ error: "not found" }));
    return;
  }
  res.writeHead(200, { "Content-Type": "application/json" }).end(JSON.stringify(body));
}

const server = createServer(router.listener(plain));
server.listen(port, "127.0.0.1", () => {
  console.log(`example backend (TypeScript) listening on http://127.0.0.1:${port}`);
});
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, () => {
    server.close();
    void router.dispatcher.drain().then(() => process.exit(0));
  });
}

function argument(name: string): string | undefined {
  const at = process.argv.indexOf(name);
  return at >= 0 ? process.argv[at + 1] : undefined;
}

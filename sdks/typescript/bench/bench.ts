/**
 * Benchmark of bench/bench_sdk.py: a TaskRouter endpoint (signature check, parsing, idempotency
 * store, response mapping) against a plain node:http handler that parses the same body and writes
 * the same answer, over real HTTP on 127.0.0.1 with 16 concurrent keep-alive connections.
 *
 *     node build/bench/bench.js [requests] [rounds]   → one JSON line per round
 */
import { Agent, createServer, request, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

import { InMemoryIdempotencyStore, TaskRouter, sign, type TaskRequest } from "../src/index.js";

const KEY = "bench-key";
const requests = Number(process.argv[2] ?? 3000);
const rounds = Number(process.argv[3] ?? 3);
const CONCURRENCY = 16;

function deliveries(n: number, prefix: string): Array<{ body: Buffer; headers: Record<string, string> }> {
  const run = `${prefix}-${Date.now()}`;
  return Array.from({ length: n }, (_, i) => {
    const envelope = {
      run_id: run, flow_id: "bench", flow_version: 1, step_id: `s${i}`, attempt: 1,
      idempotency_key: `${run}:s${i}`, inputs: { n: i }, upstream: {}, item: null, index: null, callback: null,
    };
    const body = Buffer.from(JSON.stringify(envelope));
    return { body, headers: { "Content-Type": "application/json", "Idempotency-Key": `${run}:s${i}`, ...sign(KEY, body) } };
  });
}

function plain(req: IncomingMessage, res: ServerResponse): void {
  const chunks: Buffer[] = [];
  req.on("data", (c: Buffer) => chunks.push(c));
  req.on("end", () => {
    const env = JSON.parse(Buffer.concat(chunks).toString("utf8")) as { inputs: { n: number } };
    const out = JSON.stringify({ status: "SUCCESS", output: { n: env.inputs.n }, logs: [] });
    res.writeHead(200, { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(out) }).end(out);
  });
}

const router = new TaskRouter({ signingKey: KEY, idempotency: new InMemoryIdempotencyStore() });
router.task("/task", (task: TaskRequest) => ({ n: task.inputs.n }));
const sdk = router.listener();
const server = createServer((req, res) => (req.url === "/plain" ? plain(req, res) : sdk(req, res)));
await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
const port = (server.address() as AddressInfo).port;
const agent = new Agent({ keepAlive: true, maxSockets: CONCURRENCY });

function post(path: string, item: { body: Buffer; headers: Record<string, string> }): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port, path, method: "POST", agent, headers: item.headers }, (res) => {
      res.resume();
      res.on("end", () => (res.statusCode === 200 ? resolve() : reject(new Error(`HTTP ${res.statusCode}`))));
    });
    req.on("error", reject);
    req.end(item.body);
  });
}

async function load(path: string, items: Array<{ body: Buffer; headers: Record<string, string> }>): Promise<number> {
  let next = 0;
  const started = process.hrtime.bigint();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < items.length) await post(path, items[next++]!);
    }),
  );
  return items.length / (Number(process.hrtime.bigint() - started) / 1e9);
}

await load("/plain", deliveries(500, "warm")); // warm up both paths
await load("/task", deliveries(500, "warm"));
for (let round = 0; round < rounds; round++) {
  const plainRps = await load("/plain", deliveries(requests, `p${round}`));
  const sdkRps = await load("/task", deliveries(requests, `t${round}`));
  console.log(JSON.stringify({ plain_rps: plainRps, sdk_rps: sdkRps }));
}
agent.destroy();
server.close();

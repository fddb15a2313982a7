/**
 * The example pull-mode worker in TypeScript: `node dist/worker.js`.
 *
 * LOOM_SERVER_URL, LOOM_TOKEN (role author), LOOM_WORKER_QUEUES (comma-separated), LOOM_WORKER_ID
 * and LOOM_WORKER_CONCURRENCY configure it. Task `square` (tests/conformance/README.md) and the
 * daily-report steps as tasks.
 */
import { Worker, type Job } from "@linkloom/sdk";

// docs:start typescript-worker
const worker = new Worker({
  serverUrl: process.env.LOOM_SERVER_URL ?? "http://127.0.0.1:8080",
  token: process.env.LOOM_TOKEN,
  queues: (process.env.LOOM_WORKER_QUEUES ?? "reports").split(",").filter(Boolean),
  workerId: process.env.LOOM_WORKER_ID || undefined,
  concurrency: Number(process.env.LOOM_WORKER_CONCURRENCY ?? 4),
  pollWaitSeconds: 2,
});

worker.task("square", async (job: Job) => {
  console.log(`task started key=${job.idempotencyKey} deliveries=${job.deliveries}`);
  const payload = (job.payload ?? {}) as { n?: number; seconds?: number };
  await new Promise((resolve) => setTimeout(resolve, Number(payload.seconds ?? 0) * 1000));
  const n = Number(payload.n ?? 0);
  job.log(`squared ${n}`);
  return { square: n * n, deliveries: job.deliveries, worker: worker.workerId };
});

process.on("SIGTERM", () => worker.stop());
process.on("SIGINT", () => worker.stop());
await worker.run(); // until stopped: running tasks report, then the worker deregisters
// docs:end typescript-worker

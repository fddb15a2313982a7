/**
 * Task endpoints for `node:http` and Express: `TaskRouter` maps `POST` paths to handlers and
 * answers with the task protocol; `router.listener()` is a `node:http` request listener and
 * `router.express()` an Express middleware.
 *
 *     const router = new TaskRouter({ signingKey: process.env.LOOM_SECURITY__SIGNING_KEY });
 *     router.task("/api/tasks/fetch-data", (task) => ({ records: [] }));
 *     http.createServer(router.listener()).listen(8081);
 */
import type { IncomingMessage, ServerResponse } from "node:http";

import { TaskDispatcher, type DispatcherOptions, type TaskHandler } from "./dispatcher.js";
import type { Reply } from "./idempotency.js";

/** The largest task body read (bytes); larger ones get 413. */
export const MAX_BODY_BYTES = 20_000_000;

export class TaskRouter {
  readonly dispatcher: TaskDispatcher;
  private readonly routes = new Map<string, { handler: TaskHandler; async: boolean }>();

  constructor(options: DispatcherOptions | TaskDispatcher) {
    this.dispatcher = options instanceof TaskDispatcher ? options : new TaskDispatcher(options);
  }

  /**
   * Register `POST path`. The handler takes a `TaskRequest` and returns (or resolves to) a value,
   * a `TaskResult` or a `Deferred`. With `{ async: true }` a `mode: async` step is answered 202
   * at once and the handler runs in the background with heartbeats, then the callback.
   */
  task(path: string, handler: TaskHandler, options: { async?: boolean } = {}): this {
    this.routes.set(path, { handler, async: options.async ?? false });
    return this;
  }

  /** Handle the request if it is one of this router's task paths; false otherwise. */
  async handle(req: IncomingMessage, res: ServerResponse, preread?: Uint8Array): Promise<boolean> {
    const path = (req.url ?? "/").split("?")[0] ?? "/";
    const route = this.routes.get(path);
    if (route === undefined) return false;
    if (req.method !== "POST") {
      send(res, { status: 405, body: { status: "FAILED", error: "task endpoints take POST", code: "method_not_allowed" }, headers: { Allow: "POST" } });
      return true;
    }
    let body: Uint8Array;
    try {
      body = preread ?? (await readBody(req));
    } catch (error) {
      send(res, { status: 413, body: { status: "FAILED", error: (error as Error).message, code: "too_large" } });
      return true;
    }
    send(res, await this.dispatcher.dispatch(route, body, req.headers));
    return true;
  }

  /** A `node:http` request listener: task paths are handled, anything else gets 404. */
  listener(fallback?: (req: IncomingMessage, res: ServerResponse) => void): (req: IncomingMessage, res: ServerResponse) => void {
    return (req, res) => {
      this.handle(req, res)
        .then((handled) => {
          if (handled) return;
          if (fallback) fallback(req, res);
          else send(res, { status: 404, body: { error: `no task endpoint at ${req.url ?? ""}` } });
        })
        .catch((error: unknown) => {
          console.error(`loom_task_endpoint_crashed: ${String(error)}`);
          if (!res.headersSent) send(res, { status: 500, body: { status: "FAILED", error: "internal error", code: "internal" } });
        });
    };
  }

  /**
   * An Express middleware. Mount it before `express.json()`, or keep the raw body with
   * `express.raw({ type: "*\/*" })`: the signature covers the bytes exactly as received.
   */
  express(): (req: IncomingMessage & { body?: unknown }, res: ServerResponse, next: (error?: unknown) => void) => void {
    return (req, res, next) => {
      const raw = Buffer.isBuffer(req.body) ? req.body : undefined;
      if (raw === undefined && req.body !== undefined && typeof req.body === "object" && Object.keys(req.body as object).length > 0) {
        next(new Error("the task router needs the raw body: mount it before express.json(), or use express.raw()"));
        return;
      }
      this.handle(req, res, raw)
        .then((handled) => {
          if (!handled) next();
        })
        .catch(next);
    };
  }
}

export function send(res: ServerResponse, reply: Reply): void {
  const body = JSON.stringify(reply.body);
  res.writeHead(reply.status, {
    "Content-Type": "application/json",
    "Content-Length": Buffer.byteLength(body),
    ...(reply.headers ?? {}),
  });
  res.end(body);
}

export async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    const buf = chunk as Buffer;
    size += buf.length;
    if (size > MAX_BODY_BYTES) throw new Error(`the task body is larger than ${MAX_BODY_BYTES} bytes`);
    chunks.push(buf);
  }
  return Buffer.concat(chunks);
}

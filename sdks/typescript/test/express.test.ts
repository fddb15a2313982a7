import assert from "node:assert/strict";
import type { AddressInfo } from "node:net";
import { createServer } from "node:http";
import { test } from "node:test";

import express from "express";

import { TaskRouter, sign, type TaskRequest } from "../src/index.js";

const KEY = "express-key";

async function post(url: string, payload: unknown): Promise<Response> {
  const body = JSON.stringify(payload);
  return fetch(url, { method: "POST", body, headers: { "Content-Type": "application/json", ...sign(KEY, body) } });
}

test("the router is Express middleware beside ordinary JSON routes", async () => {
  // docs:start typescript-express
  const router = new TaskRouter({ signingKey: KEY });
  router.task("/api/tasks/double", (task: TaskRequest) => ({ double: (task.inputs.n as number) * 2 }));
  const app = express();
  app.use(router.express()); // before express.json(): signatures cover the raw body
  app.use(express.json());
  app.post("/plain", (req, res) => { res.json({ echoed: req.body as unknown }); });
  // docs:end typescript-express
  const server = app.listen(0);
  try {
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const task = await post(`${base}/api/tasks/double`, { run_id: "r", step_id: "s", inputs: { n: 21 } });
    assert.equal(task.status, 200);
    assert.deepEqual(await task.json(), { status: "SUCCESS", output: { double: 42 }, logs: [] });
    const plain = await post(`${base}/plain`, { a: 1 });
    assert.deepEqual(await plain.json(), { echoed: { a: 1 } });
    const unsigned = await fetch(`${base}/api/tasks/double`, { method: "POST", body: "{}" });
    assert.equal(unsigned.status, 401);
  } finally {
    server.close();
  }
});

test("the router is a node:http listener; unknown paths get 404 and GET gets 405", async () => {
  const router = new TaskRouter({ signingKey: KEY }).task("/t", () => "ok");
  const server = createServer(router.listener()).listen(0);
  try {
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    assert.equal((await post(`${base}/t`, { run_id: "r", step_id: "s" })).status, 200);
    assert.equal((await post(`${base}/nope`, {})).status, 404);
    assert.equal((await fetch(`${base}/t`)).status, 405);
  } finally {
    server.close();
  }
});

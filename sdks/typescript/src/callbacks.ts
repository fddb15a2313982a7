/**
 * Posting the result and heartbeats of async steps back to the server (docs/protocol.md, section 2).
 *
 * Every POST is signed afresh with the shared key. Connection errors, 429 and 5xx are retried with
 * backoff; 409 means the attempt already has its result (or ended): stop, never retry it.
 */
import { sign } from "./signing.js";
import { TaskResult } from "./tasks.js";

export type CallbackOutcome = "delivered" | "already_completed" | "rejected" | "gave_up";

export interface CallbackOptions {
  /** Retries after the first try (default 6). */
  retries?: number;
  /** First delay between tries, seconds (default 0.5; doubles up to 10). */
  backoffSeconds?: number;
  /** Per-request timeout, seconds (default 10). */
  timeoutSeconds?: number;
}

export class CallbackSender {
  private readonly retries: number;
  private readonly backoff: number;
  private readonly timeout: number;

  constructor(
    private readonly signingKey: string,
    options: CallbackOptions = {},
  ) {
    this.retries = options.retries ?? 6;
    this.backoff = options.backoffSeconds ?? 0.5;
    this.timeout = options.timeoutSeconds ?? 10;
  }

  /** POST the final result of an attempt (a `TaskResult` or a plain output) to its callback URL. */
  async complete(url: string, result: unknown, logs: string[] = []): Promise<CallbackOutcome> {
    const body = JSON.stringify(TaskResult.from(result).toWire(logs));
    return this.post(url, body, this.retries + 1);
  }

  /** POST one heartbeat; retried once (the next heartbeat comes anyway). */
  async heartbeat(url: string): Promise<CallbackOutcome> {
    return this.post(url, "{}", 2);
  }

  private async post(url: string, body: string, attempts: number): Promise<CallbackOutcome> {
    let delay = this.backoff;
    for (let attempt = 1; attempt <= attempts; attempt++) {
      try {
        const response = await fetch(url, {
          method: "POST",
          body,
          headers: { "Content-Type": "application/json", ...sign(this.signingKey, body) },
          signal: AbortSignal.timeout(this.timeout * 1000),
        });
        await response.arrayBuffer();
        if (response.ok) return "delivered";
        if (response.status === 409) return "already_completed";
        if (response.status < 500 && response.status !== 429) {
          console.error(`loom_callback_rejected: HTTP ${response.status}`);
          return "rejected";
        }
      } catch (error) {
        console.warn(`loom_callback_connection_error: ${(error as Error).message} (try ${attempt}/${attempts})`);
      }
      if (attempt < attempts) {
        await sleep(delay);
        delay = Math.min(delay * 2, 10);
      }
    }
    return "gave_up";
  }
}

export function sleep(seconds: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, seconds * 1000));
}

/**
 * De-duplication of deliveries by their `Idempotency-Key` (docs/protocol.md, section 5).
 *
 * Contract of an `IdempotencyStore` (each method may return a promise):
 * - `claim(key, ttlSeconds)` marks the key in flight and returns true; false when a reply is
 *   stored or another delivery holds a live claim (a claim older than `ttlSeconds` is abandoned).
 * - `put(key, reply)` stores the final reply and ends the claim (only SUCCESS replies are put).
 * - `release(key)` ends the claim without storing anything.
 * - `get(key)` returns the stored reply or null.
 */

/** An HTTP reply to send back to the Link Loom server. */
export interface Reply {
  status: number;
  body: unknown;
  headers?: Record<string, string>;
}

type MaybePromise<T> = T | Promise<T>;

export interface IdempotencyStore {
  get(key: string): MaybePromise<Reply | null>;
  claim(key: string, ttlSeconds: number): MaybePromise<boolean>;
  put(key: string, reply: Reply): MaybePromise<void>;
  release(key: string): MaybePromise<void>;
}

export const DEFAULT_RETENTION_SECONDS = 7 * 24 * 3600;

/** Replies kept in memory: for tests and single-process backends that may forget on restart. */
export class InMemoryIdempotencyStore implements IdempotencyStore {
  private readonly done = new Map<string, { at: number; reply: Reply }>();
  private readonly claims = new Map<string, number>();

  constructor(private readonly retentionSeconds = DEFAULT_RETENTION_SECONDS) {}

  get(key: string): Reply | null {
    const entry = this.done.get(key);
    if (entry === undefined) return null;
    if (entry.at + this.retentionSeconds * 1000 < Date.now()) {
      this.done.delete(key);
      return null;
    }
    return entry.reply;
  }

  claim(key: string, ttlSeconds: number): boolean {
    const now = Date.now();
    if (this.get(key) !== null) return false;
    const heldUntil = this.claims.get(key);
    if (heldUntil !== undefined && heldUntil > now) return false;
    this.claims.set(key, now + ttlSeconds * 1000);
    return true;
  }

  put(key: string, reply: Reply): void {
    this.claims.delete(key);
    this.done.set(key, { at: Date.now(), reply });
  }

  release(key: string): void {
    this.claims.delete(key);
  }
}

/**
 * HMAC-SHA256 signatures of the task protocol (docs/protocol.md, section 4).
 *
 * `X-Loom-Timestamp: <unix seconds>` and `X-Loom-Signature: v1=<hex hmac of "<ts>." + body>`,
 * with exactly one `v1=` entry and a clock-skew window of 300 s in either direction.
 */
import { createHmac, timingSafeEqual } from "node:crypto";

export const TIMESTAMP_HEADER = "X-Loom-Timestamp";
export const SIGNATURE_HEADER = "X-Loom-Signature";
export const DEFAULT_TOLERANCE_SECONDS = 300;

/** The request's signature is missing, malformed, wrong or outside the time window. */
export class SignatureError extends Error {
  override name = "SignatureError";
}

export type Headers = Record<string, string | string[] | undefined>;

/** The headers that sign `body` at `timestamp` (unix seconds, now by default). */
export function sign(key: string, body: Uint8Array | string, timestamp?: number): Record<string, string> {
  const ts = String(Math.floor(timestamp ?? Date.now() / 1000));
  return { [TIMESTAMP_HEADER]: ts, [SIGNATURE_HEADER]: `v1=${mac(key, ts, body)}` };
}

/**
 * Check a `v1` signature over the raw body and return its timestamp.
 * Throws `SignatureError` saying what is wrong, never what the right value would be.
 */
export function verify(
  key: string,
  body: Uint8Array | string,
  headers: Headers,
  options: { toleranceSeconds?: number; now?: number } = {},
): number {
  const ts = header(headers, TIMESTAMP_HEADER);
  const sig = header(headers, SIGNATURE_HEADER);
  if (!ts || !sig) {
    throw new SignatureError(`missing ${TIMESTAMP_HEADER} or ${SIGNATURE_HEADER} header`);
  }
  if (!/^\d{1,15}$/.test(ts)) {
    throw new SignatureError(`${TIMESTAMP_HEADER} must be whole unix seconds`);
  }
  const tolerance = options.toleranceSeconds ?? DEFAULT_TOLERANCE_SECONDS;
  const now = options.now ?? Date.now() / 1000;
  const skew = Math.abs(now - Number(ts));
  if (skew > tolerance) {
    throw new SignatureError(
      `signature timestamp is ${Math.round(skew)}s away from now (allowed: ${tolerance}s); check the clocks or re-sign`,
    );
  }
  const match = /^v1=([0-9a-f]{64})$/.exec(sig.trim());
  if (!match) {
    throw new SignatureError(`${SIGNATURE_HEADER} must be exactly one v1=<64 hex digits> entry`);
  }
  const expected = Buffer.from(mac(key, ts, body), "hex");
  const given = Buffer.from(match[1] ?? "", "hex");
  if (expected.length !== given.length || !timingSafeEqual(expected, given)) {
    throw new SignatureError("signature does not match the body");
  }
  return Number(ts);
}

/** A header by case-insensitive name; a repeated header is refused as missing. */
export function header(headers: Headers, name: string): string | undefined {
  const wanted = name.toLowerCase();
  for (const [key, value] of Object.entries(headers)) {
    if (key.toLowerCase() === wanted) {
      return Array.isArray(value) ? (value.length === 1 ? value[0] : undefined) : value;
    }
  }
  return undefined;
}

function mac(key: string, ts: string, body: Uint8Array | string): string {
  return createHmac("sha256", key).update(`${ts}.`).update(body).digest("hex");
}

// The editor's calls to the server that served it (session cookie, CSRF token in a header).
import type { Problem } from "../spec/problems";
import type { FlowSchema } from "../spec/schema";

export interface Boot {
  mode: "flow" | "new" | "proposal";
  flowId: string | null;
  proposal: { id: string; title: string; revision: number; status: string } | null;
  text: string;
  path: string | null;
  from: "repo" | "version" | "new";
  shape: string;
  shapeName: string | null;
  original: string | null;
  readOnly: boolean;
  secrets: string[];
  csrf: string;
  proposals: boolean;
}

export interface Validation {
  valid: boolean;
  errors: number;
  problems: Problem[];
  shape: string;
}

export class CallFailed extends Error {
  constructor(
    message: string,
    public status: number,
    public problems: Problem[] = [],
  ) {
    super(message);
  }
}

async function call<T>(boot: Boot, path: string, body?: unknown): Promise<T> {
  const response = await fetch(path, {
    method: body === undefined ? "GET" : "POST",
    credentials: "same-origin",
    headers: body === undefined ? {} : { "Content-Type": "application/json", "X-CSRF-Token": boot.csrf },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    throw new CallFailed(String(data.error ?? `the server answered ${response.status}`), response.status, data.problems ?? []);
  }
  return data as T;
}

export const fetchSchema = (boot: Boot) => call<FlowSchema>(boot, "/editor/schema");
export const validate = (boot: Boot, text: string) => call<Validation>(boot, "/editor/validate", { text });
export const save = (boot: Boot, body: Record<string, string>) =>
  call<{ proposal_id: string; url: string }>(boot, "/editor/save", body);

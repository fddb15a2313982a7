// The server validator's problems (the same as `loom validate`), placed where they belong:
// on a step and one of its fields, on the flow's settings, or on the spec as a whole.

export interface Problem {
  file: string;
  line: number;
  column: number;
  path: string; // JSON path into the spec: $.steps[2].url
  message: string;
  hint: string | null;
  severity: "error" | "warning";
  code: string;
}

export interface Placed {
  byStep: Map<string, Problem[]>; // step id → its problems
  byField: Map<string, Problem[]>; // `${stepId}.${field}` or `flow.${field}` → problems
  flow: Problem[]; // about the flow's own settings
  other: Problem[]; // about the whole spec
}

const MISSING = /required field '([^']+)'/; // "missing required field 'url'" points at the step
const STEP = /^\$\.steps\[(\d+)\](?:\.([A-Za-z_][\w-]*))?/;
const FLOW = /^\$\.([A-Za-z_][\w-]*)/;

export function place(problems: Problem[], stepIds: string[]): Placed {
  const out: Placed = { byStep: new Map(), byField: new Map(), flow: [], other: [] };
  const add = (map: Map<string, Problem[]>, key: string, p: Problem) => map.set(key, [...(map.get(key) ?? []), p]);
  for (const p of problems) {
    const step = STEP.exec(p.path);
    if (step) {
      const id = stepIds[Number(step[1])];
      if (id !== undefined) {
        add(out.byStep, id, p);
        const field = step[2] ?? (p.code === "missing-field" ? MISSING.exec(p.message)?.[1] : undefined);
        if (field) add(out.byField, `${id}.${field}`, p);
        continue;
      }
    }
    const flow = FLOW.exec(p.path);
    if (flow && flow[1] !== "steps") {
      out.flow.push(p);
      add(out.byField, `flow.${flow[1]}`, p);
      continue;
    }
    const missing = p.path === "$" && p.code === "missing-field" ? MISSING.exec(p.message)?.[1] : undefined;
    if (missing) {
      out.flow.push(p);
      add(out.byField, `flow.${missing}`, p);
      continue;
    }
    out.other.push(p);
  }
  return out;
}

// A flow spec (canonical shape) as a graph and back. Steps are nodes; each `depends_on` entry
// is an edge upstream → step. Writing a graph back changes only what the graph says (which
// steps exist, what each depends on); every other field of every step is kept as it was,
// in its order, so spec → graph → spec gives back the same spec.

import type { Json, JsonObject } from "./yamlText";

export interface StepNode {
  id: string;
  type: string; // the step's type (http, transform, a plugin's type…)
  step: JsonObject; // the step as written
}

export interface DepEdge {
  id: string; // `${source}->${target}`
  source: string; // the upstream step
  target: string; // the step that depends on it
}

export interface FlowGraph {
  nodes: StepNode[];
  edges: DepEdge[];
}

export function edgeId(source: string, target: string): string {
  return `${source}->${target}`;
}

export function stepsOf(spec: Json): JsonObject[] {
  if (typeof spec !== "object" || spec === null || Array.isArray(spec)) return [];
  const steps = spec.steps;
  return Array.isArray(steps) ? steps.filter((s): s is JsonObject => typeof s === "object" && s !== null && !Array.isArray(s)) : [];
}

function depsOf(step: JsonObject): string[] {
  const deps = step.depends_on;
  if (typeof deps === "string") return [deps];
  return Array.isArray(deps) ? deps.filter((d): d is string => typeof d === "string") : [];
}

/** The spec's steps as nodes and their dependencies as edges (only between known steps). */
export function specToGraph(spec: Json): FlowGraph {
  const steps = stepsOf(spec);
  const ids = new Set(steps.map((s) => String(s.id ?? "")));
  const nodes = steps.map((step) => ({ id: String(step.id ?? ""), type: String(step.type ?? "http"), step }));
  const edges: DepEdge[] = [];
  for (const step of steps) {
    const target = String(step.id ?? "");
    for (const source of depsOf(step)) {
      if (ids.has(source)) edges.push({ id: edgeId(source, target), source, target });
    }
  }
  return { nodes, edges };
}

/**
 * The spec with the graph's steps and dependencies: steps in the graph's node order, each
 * step's fields as the node carries them, `depends_on` rewritten from the edges (kept entries
 * in their order, new ones after; the key removed when nothing is left and it was absent or
 * empty before). References to steps the graph does not have are kept (the validator reports
 * them), except to steps the graph deleted.
 */
export function graphToSpec(spec: JsonObject, graph: FlowGraph, deleted: Iterable<string> = []): JsonObject {
  const gone = new Set(deleted);
  const ids = new Set(graph.nodes.map((n) => n.id));
  const upstream = new Map<string, string[]>();
  for (const e of graph.edges) {
    if (!upstream.has(e.target)) upstream.set(e.target, []);
    upstream.get(e.target)!.push(e.source);
  }
  const steps = graph.nodes.map((node) => {
    const step = node.step;
    const had = depsOf(step);
    const wanted = upstream.get(node.id) ?? [];
    const kept = had.filter((d) => (ids.has(d) ? wanted.includes(d) : !gone.has(d)));
    const added = wanted.filter((d) => !kept.includes(d));
    const deps = [...kept, ...added];
    const same = deps.length === had.length && deps.every((d, i) => d === had[i]);
    if (same) return step;
    const out: JsonObject = {};
    let placed = false;
    for (const [key, value] of Object.entries(step)) {
      if (key === "depends_on") {
        placed = true;
        if (deps.length) out.depends_on = typeof value === "string" && deps.length === 1 ? deps[0] : deps;
      } else {
        out[key] = value;
      }
    }
    if (!placed && deps.length) return withDeps(step, deps);
    return out;
  });
  const out: JsonObject = {};
  let placed = false;
  for (const [key, value] of Object.entries(spec)) {
    if (key === "steps") {
      out.steps = steps;
      placed = true;
    } else {
      out[key] = value;
    }
  }
  if (!placed) out.steps = steps;
  return out;
}

// Canonical place of depends_on: after id, type, name and description (see loading._step_order).
const BEFORE_DEPS = ["id", "type", "name", "description"];

function withDeps(step: JsonObject, deps: string[]): JsonObject {
  const out: JsonObject = {};
  let placed = false;
  for (const [key, value] of Object.entries(step)) {
    if (!placed && !BEFORE_DEPS.includes(key)) {
      out.depends_on = deps;
      placed = true;
    }
    out[key] = value;
  }
  if (!placed) out.depends_on = deps;
  return out;
}

/** The path of an existing route target → … → source, if any (so source → target closes a cycle). */
export function cyclePath(edges: readonly { source: string; target: string }[], source: string, target: string): string[] | null {
  if (source === target) return [source, target];
  const next = new Map<string, string[]>();
  for (const e of edges) {
    if (!next.has(e.source)) next.set(e.source, []);
    next.get(e.source)!.push(e.target);
  }
  const seen = new Set<string>();
  const walk = (at: string, path: string[]): string[] | null => {
    if (at === source) return path;
    if (seen.has(at)) return null;
    seen.add(at);
    for (const n of next.get(at) ?? []) {
      const found = walk(n, [...path, n]);
      if (found) return found;
    }
    return null;
  };
  const found = walk(target, [target]);
  return found ? [source, ...found] : null;
}

/** Every step upstream of `stepId` (what its templates may read as steps.<id>.output). */
export function upstreamOf(edges: readonly DepEdge[], stepId: string): string[] {
  const prev = new Map<string, string[]>();
  for (const e of edges) {
    if (!prev.has(e.target)) prev.set(e.target, []);
    prev.get(e.target)!.push(e.source);
  }
  const out: string[] = [];
  const visit = (id: string): void => {
    for (const p of prev.get(id) ?? []) {
      if (!out.includes(p)) {
        out.push(p);
        visit(p);
      }
    }
  };
  visit(stepId);
  return out;
}

/** A step id not taken yet: `fetch`, `fetch_2`, `fetch_3`… */
export function freeId(base: string, taken: Iterable<string>): string {
  const used = new Set(taken);
  const clean = base.replace(/[^A-Za-z0-9_-]/g, "_").replace(/^([^A-Za-z_])/, "_$1").slice(0, 56) || "step";
  if (!used.has(clean)) return clean;
  for (let n = 2; ; n += 1) if (!used.has(`${clean}_${n}`)) return `${clean}_${n}`;
}

/** Rename a step: its id and every depends_on entry naming it (order and fields kept). */
export function renameStep(spec: JsonObject, from: string, to: string): JsonObject {
  const steps = stepsOf(spec).map((step) => {
    const out: JsonObject = {};
    for (const [key, value] of Object.entries(step)) {
      if (key === "id" && value === from) out.id = to;
      else if (key === "depends_on" && Array.isArray(value)) out.depends_on = value.map((d) => (d === from ? to : d));
      else if (key === "depends_on" && value === from) out.depends_on = to;
      else out[key] = value;
    }
    return out;
  });
  return { ...spec, steps };
}

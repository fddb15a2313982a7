// spec ↔ graph round trips: every field, key order and comment is kept, and a small change
// (one URL, one new dependency, one new step) is a small text diff.
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { cyclePath, edgeId, freeId, graphToSpec, renameStep, specToGraph, upstreamOf } from "./graph";
import { applySpec, parseSpec, stringify, type JsonObject } from "./yamlText";

const fixture = (name: string): string => readFileSync(new URL(`./fixtures/${name}`, import.meta.url), "utf8");
const FIXTURES = ["daily-report.yaml", "order-triage.yaml", "parallel-merge.yaml", "hand-written.yaml"];

function specOf(text: string): JsonObject {
  const parsed = parseSpec(text);
  expect(parsed.errors).toEqual([]);
  return parsed.value as JsonObject;
}

/** The lines that differ between two texts, as "-old" / "+new". */
function changedLines(a: string, b: string): string[] {
  const x = a.split("\n");
  const y = b.split("\n");
  let start = 0;
  while (start < x.length && start < y.length && x[start] === y[start]) start += 1;
  let endX = x.length;
  let endY = y.length;
  while (endX > start && endY > start && x[endX - 1] === y[endY - 1]) {
    endX -= 1;
    endY -= 1;
  }
  return [...x.slice(start, endX).map((l) => `-${l}`), ...y.slice(start, endY).map((l) => `+${l}`)];
}

describe("spec → graph → spec", () => {
  it.each(FIXTURES)("%s gives back the same text, byte for byte", (name) => {
    const text = fixture(name);
    const spec = specOf(text);
    const back = graphToSpec(spec, specToGraph(spec));
    expect(back).toStrictEqual(spec);
    expect(Object.keys(back)).toEqual(Object.keys(spec));
    expect(applySpec(text, back)).toBe(text);
  });

  it("makes one node per step and one edge per dependency", () => {
    const spec = specOf(fixture("hand-written.yaml"));
    const graph = specToGraph(spec);
    expect(graph.nodes.map((n) => [n.id, n.type])).toEqual([
      ["Fetch-Orders", "http"],
      ["pick", "transform"],
      ["notify", "http"],
    ]);
    expect(graph.edges.map((e) => e.id)).toEqual(["Fetch-Orders->pick", "pick->notify"]);
  });

  it("keeps every field of every step, in its order, whatever its type", () => {
    const spec = specOf(fixture("hand-written.yaml"));
    const back = graphToSpec(spec, specToGraph(spec));
    const steps = back.steps as JsonObject[];
    expect(Object.keys(steps[0])).toEqual(["id", "url", "type", "method", "query"]);
    expect(Object.keys(steps[1])).toEqual(["type", "id", "depends_on", "template"]);
    expect(steps[2].body).toBe("Paid orders: {{ steps.pick.output.paid | length }}\nHave a nice day.\n");
  });
});

describe("small changes are small diffs", () => {
  it("changing one step's URL changes exactly that line, comments kept", () => {
    const text = fixture("hand-written.yaml");
    const spec = specOf(text);
    const steps = spec.steps as JsonObject[];
    const changed = { ...spec, steps: steps.map((s) => (s.id === "notify" ? { ...s, url: "https://chat.example/v2/{{ secrets.CHAT_TOKEN }}" } : s)) };
    const out = applySpec(text, changed);
    expect(changedLines(text, out)).toEqual([
      "-  url: https://chat.example/hooks/{{ secrets.CHAT_TOKEN }}",
      "+  url: https://chat.example/v2/{{ secrets.CHAT_TOKEN }}",
    ]);
    expect(out).toContain("# keep only the paid ones");
  });

  it("keeps a value's quoting style when it changes", () => {
    const text = fixture("hand-written.yaml");
    const spec = specOf(text);
    const steps = spec.steps as JsonObject[];
    const out = applySpec(text, { ...spec, steps: steps.map((s) => (s.id === "Fetch-Orders" ? { ...s, url: "https://shop.example/api/v2/orders" } : s)) });
    expect(changedLines(text, out)).toEqual([
      "-  url: 'https://shop.example/api/orders'",
      "+  url: 'https://shop.example/api/v2/orders'",
    ]);
  });

  it("a field set in a form is one new line under its step; a cleared one is one line less", () => {
    const text = fixture("hand-written.yaml");
    const spec = specOf(text);
    const steps = spec.steps as JsonObject[];
    const withTimeout = { ...spec, steps: steps.map((s) => (s.id === "pick" ? { ...s, timeout: "30s" } : s)) };
    const out = applySpec(text, withTimeout);
    expect(changedLines(text, out)).toEqual(["+  timeout: 30s"]);
    expect(out.split("\n").indexOf("  timeout: 30s")).toBe(text.split("\n").indexOf("    paid: \"{{ steps['Fetch-Orders'].output | selectattr('paid') | list }}\"") + 1);
    const cleared = { ...spec, steps: steps.map((s) => (s.id === "Fetch-Orders" ? { id: s.id, url: s.url, type: s.type, query: s.query } : s)) };
    expect(changedLines(text, applySpec(text, cleared))).toEqual(["-  method: GET"]);
  });

  it("a multi-line body keeps its block style and changes only its changed line", () => {
    const text = fixture("hand-written.yaml");
    const spec = specOf(text);
    const steps = spec.steps as JsonObject[];
    const body = "Paid orders: {{ steps.pick.output.paid | length }}\nHave a good day.\n";
    const out = applySpec(text, { ...spec, steps: steps.map((s) => (s.id === "notify" ? { ...s, body } : s)) });
    expect(changedLines(text, out)).toEqual(["-    Have a nice day.", "+    Have a good day."]);
  });

  it("a nested value and a flow mapping change in place", () => {
    const text = fixture("hand-written.yaml");
    const spec = specOf(text);
    const out = applySpec(text, { ...spec, inputs: { since: { type: "string", required: false } } });
    expect(changedLines(text, out)).toEqual(["-  since: {type: string, required: true}", "+  since: {type: string, required: false}"]);
  });

  it("drawing an edge adds the dependency in the style the list was written in", () => {
    const text = fixture("daily-report.yaml");
    const spec = specOf(text);
    const graph = specToGraph(spec);
    graph.edges.push({ id: edgeId("fetch_data", "send_email"), source: "fetch_data", target: "send_email" });
    const out = applySpec(text, graphToSpec(spec, graph));
    expect(changedLines(text, out)).toEqual(["-    depends_on: [process]", "+    depends_on: [process, fetch_data]"]);
  });

  it("a new step is appended with only its own lines, the rest untouched", () => {
    const text = fixture("daily-report.yaml");
    const spec = specOf(text);
    const graph = specToGraph(spec);
    graph.nodes.push({ id: "archive", type: "delay", step: { id: "archive", type: "delay", duration: "5s" } });
    graph.edges.push({ id: edgeId("send_email", "archive"), source: "send_email", target: "archive" });
    const out = applySpec(text, graphToSpec(spec, graph));
    const diff = changedLines(text, out);
    expect(diff.filter((l) => l.startsWith("-"))).toEqual([]);
    expect(diff).toEqual(["+  - id: archive", "+    type: delay", "+    depends_on: [send_email]", "+    duration: 5s"]);
    expect(specOf(out).steps).toHaveLength(4);
  });

  it("deleting a step removes its lines and the dependencies on it", () => {
    const text = fixture("hand-written.yaml");
    const spec = specOf(text);
    const graph = specToGraph(spec);
    graph.nodes = graph.nodes.filter((n) => n.id !== "pick");
    graph.edges = graph.edges.filter((e) => e.source !== "pick" && e.target !== "pick");
    const out = applySpec(text, graphToSpec(spec, graph, ["pick"]));
    const steps = specOf(out).steps as JsonObject[];
    expect(steps.map((s) => s.id)).toEqual(["Fetch-Orders", "notify"]);
    expect("depends_on" in steps[1]).toBe(false);
    expect(out).toContain("# A flow written by hand");
    expect(out).toContain("id: Fetch-Orders   # mixed case");
    expect(out).not.toContain("keep only the paid ones");
  });
});

describe("graph helpers", () => {
  const edges = [
    { source: "a", target: "b" },
    { source: "b", target: "c" },
    { source: "a", target: "d" },
  ];

  it("refuses an edge that closes a cycle and names its path", () => {
    expect(cyclePath(edges, "c", "a")).toEqual(["c", "a", "b", "c"]);
    expect(cyclePath(edges, "a", "a")).toEqual(["a", "a"]);
    expect(cyclePath(edges, "d", "c")).toBeNull();
  });

  it("lists every upstream step of a step", () => {
    const deps = edges.map((e) => ({ ...e, id: edgeId(e.source, e.target) }));
    expect(upstreamOf(deps, "c").sort()).toEqual(["a", "b"]);
    expect(upstreamOf(deps, "a")).toEqual([]);
  });

  it("finds free ids and renames a step with its references", () => {
    expect(freeId("http", ["http", "http_2"])).toBe("http_3");
    expect(freeId("9 lives", [])).toBe("_9_lives");
    const spec = specOf(fixture("hand-written.yaml"));
    const renamed = renameStep(spec, "pick", "paid");
    const steps = renamed.steps as JsonObject[];
    expect(steps.map((s) => s.id)).toEqual(["Fetch-Orders", "paid", "notify"]);
    expect(steps[2].depends_on).toEqual(["paid"]);
  });

  it("steps added to an empty 'steps: []' are written as a block, one step after another", () => {
    const text = "id: new-flow\nname: New flow\nsteps: []\n";
    const one = applySpec(text, { id: "new-flow", name: "New flow", steps: [{ id: "a", type: "http" }] });
    expect(one).toBe("id: new-flow\nname: New flow\nsteps:\n  - id: a\n    type: http\n");
    const two = applySpec(one, { id: "new-flow", name: "New flow", steps: [{ id: "a", type: "http" }, { id: "b", type: "delay" }] });
    expect(changedLines(one, two)).toEqual(["+  - id: b", "+    type: delay"]);
  });

  it("writes a flow made from nothing in the canonical style", () => {
    const text = stringify({
      id: "new-flow",
      steps: [
        { id: "a", type: "http", url: "http://x.test/a" },
        { id: "b", type: "http", depends_on: ["a"], url: "http://x.test/b" },
      ],
    });
    expect(text).toBe(
      "id: new-flow\nsteps:\n  - id: a\n    type: http\n    url: http://x.test/a\n  - id: b\n    type: http\n    depends_on: [a]\n    url: http://x.test/b\n",
    );
  });
});

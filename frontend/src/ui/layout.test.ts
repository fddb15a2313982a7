import { describe, expect, it } from "vitest";
import { specToGraph } from "../spec/graph";
import type { JsonObject } from "../spec/yamlText";
import { layout } from "./layout";

const spec: JsonObject = {
  id: "fan",
  steps: [
    { id: "start", type: "http", url: "http://x.test" },
    { id: "left", type: "http", url: "http://x.test", depends_on: ["start"] },
    { id: "right", type: "http", url: "http://x.test", depends_on: ["start"] },
    { id: "join", type: "merge", depends_on: ["left", "right"] },
  ],
};

describe("layout", () => {
  it("puts each step below its dependencies, fan-out side by side, and is stable", async () => {
    const first = await layout(specToGraph(spec));
    const again = await layout(specToGraph(spec));
    expect(again).toEqual(first);
    expect(first.left.y).toBeGreaterThan(first.start.y);
    expect(first.left.y).toBe(first.right.y);
    expect(first.left.x).toBeLessThan(first.right.x); // the spec's order within a layer
    expect(first.join.y).toBeGreaterThan(first.left.y);
  });
});

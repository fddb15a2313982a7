import { describe, expect, it } from "vitest";
import { place, type Problem } from "./problems";

const problem = (path: string, message = "bad"): Problem => ({
  file: "flow.yaml", line: 1, column: 1, path, message, hint: null, severity: "error", code: "invalid",
});

describe("placing the validator's problems", () => {
  it("puts a step field's problem on that step and field", () => {
    const placed = place([problem("$.steps[1].url", "url: field required"), problem("$.steps[0]")], ["a", "b"]);
    expect(placed.byStep.get("b")?.map((p) => p.message)).toEqual(["url: field required"]);
    expect(placed.byField.get("b.url")).toHaveLength(1);
    expect(placed.byStep.get("a")).toHaveLength(1);
    expect(placed.other).toEqual([]);
  });

  it("puts a missing required field's problem (reported on the step) on that field", () => {
    const missing = { ...problem("$.steps[0]", "missing required field 'url'"), code: "missing-field" };
    const placed = place([missing], ["fetch"]);
    expect(placed.byField.get("fetch.url")).toEqual([missing]);
    expect(placed.byStep.get("fetch")).toEqual([missing]);
  });

  it("puts the flow's own settings apart, and the rest with the whole spec", () => {
    const placed = place([problem("$.schedules[0].cron"), problem("$"), problem("$.steps[7].url")], ["a"]);
    expect(placed.flow).toHaveLength(1);
    expect(placed.byField.get("flow.schedules")).toHaveLength(1);
    expect(placed.other.map((p) => p.path)).toEqual(["$", "$.steps[7].url"]);
  });
});

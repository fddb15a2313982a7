// Automatic, stable layout of a flow's graph with ELK's layered algorithm (top to bottom):
// the same spec always gives the same positions, and the steps keep the spec's order within
// a layer.
import ELK from "elkjs/lib/elk.bundled.js";
import type { FlowGraph } from "../spec/graph";

export const NODE_WIDTH = 190;
export const NODE_HEIGHT = 58;

const elk = new ELK();

export type Positions = Record<string, { x: number; y: number }>;

export async function layout(graph: FlowGraph): Promise<Positions> {
  const result = await elk.layout({
    id: "flow",
    layoutOptions: {
      "elk.algorithm": "layered",
      "elk.direction": "DOWN",
      "elk.layered.spacing.nodeNodeBetweenLayers": "56",
      "elk.spacing.nodeNode": "36",
      "elk.layered.considerModelOrder.strategy": "NODES_AND_EDGES",
      "elk.layered.crossingMinimization.forceNodeModelOrder": "true",
    },
    children: graph.nodes.map((n) => ({ id: n.id, width: NODE_WIDTH, height: NODE_HEIGHT })),
    edges: graph.edges.map((e) => ({ id: e.id, sources: [e.source], targets: [e.target] })),
  });
  const out: Positions = {};
  for (const child of result.children ?? []) out[child.id] = { x: child.x ?? 0, y: child.y ?? 0 };
  return out;
}

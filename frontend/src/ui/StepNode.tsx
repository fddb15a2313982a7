// One step on the canvas: its id, type and name, with its problems counted on it.
import { Handle, Position, type Node, type NodeProps } from "@xyflow/react";
import { memo } from "react";

export type StepNodeData = {
  stepId: string;
  type: string;
  name: string;
  errors: number;
  warnings: number;
  firstProblem: string;
  plugin: boolean;
};

export type StepFlowNode = Node<StepNodeData, "step">;

export const StepNode = memo(function StepNode({ data, selected, isConnectable }: NodeProps<StepFlowNode>) {
  const state = data.errors ? "has-errors" : data.warnings ? "has-warnings" : "ok";
  return (
    <div
      className={`step-node ${state}${selected ? " selected" : ""}`}
      data-step={data.stepId}
      title={data.firstProblem || `${data.stepId} (${data.type})`}
    >
      <Handle type="target" position={Position.Top} isConnectable={isConnectable} aria-label={`into ${data.stepId}`} />
      <div className="step-head">
        <span className="step-id">{data.stepId}</span>
        {data.errors > 0 && (
          <span className="step-problems" aria-label={`${data.errors} error(s)`}>
            {data.errors}
          </span>
        )}
      </div>
      <div className="step-sub">
        <span className={`step-type${data.plugin ? " plugin" : ""}`}>{data.type}</span>
        {data.name && <span className="step-name"> · {data.name}</span>}
      </div>
      <Handle type="source" position={Position.Bottom} isConnectable={isConnectable} aria-label={`out of ${data.stepId}`} />
    </div>
  );
});

// The editor: palette, canvas, step/flow forms and the YAML tab around one source of truth,
// the spec's YAML text. Every change (a drawn edge, a dropped step, a form field, a YAML edit)
// becomes a new text through applySpec, so undo/redo is a stack of texts and the YAML the
// editor saves is the author's own, changed where the change is.
import {
  Background,
  Controls,
  MiniMap,
  ReactFlow,
  ReactFlowProvider,
  useReactFlow,
  type Connection,
  type Edge,
  type EdgeChange,
  type NodeChange,
} from "@xyflow/react";
import { useCallback, useEffect, useMemo, useRef, useState, type DragEvent } from "react";
import { cyclePath, freeId, graphToSpec, renameStep, specToGraph, stepsOf, upstreamOf, type FlowGraph } from "../spec/graph";
import { place, type Problem } from "../spec/problems";
import { flowFields, stepTypes, type FlowSchema, type StepType } from "../spec/schema";
import { applySpec, parseSpec, stringify, type Json, type JsonObject } from "../spec/yamlText";
import { CallFailed, save, validate, type Boot, type Validation } from "./api";
import { FieldInput } from "./Forms";
import { layout, type Positions } from "./layout";
import { StepNode, type StepFlowNode } from "./StepNode";

const NODE_TYPES = { step: StepNode };
const DRAG_TYPE = "application/x-linkloom-step";
const COALESCE_MS = 1200; // typing into one field within this time is one undo step

interface Entry {
  text: string;
  key: string | null;
  at: number;
}

function isTyping(target: EventTarget | null): boolean {
  const el = target as HTMLElement | null;
  return Boolean(el && (el.tagName === "INPUT" || el.tagName === "TEXTAREA" || el.tagName === "SELECT" || el.isContentEditable));
}

function newFlowText(): string {
  return stringify({ id: "new-flow", name: "New flow", steps: [] });
}

export function App(props: { boot: Boot; schema: FlowSchema }) {
  return (
    <ReactFlowProvider>
      <Editor {...props} />
    </ReactFlowProvider>
  );
}

function Editor({ boot, schema }: { boot: Boot; schema: FlowSchema }) {
  const readOnly = boot.readOnly;
  const types = useMemo(() => stepTypes(schema), [schema]);
  const typeOf = useMemo(() => new Map(types.map((t) => [t.type, t])), [types]);
  const flowSettings = useMemo(() => flowFields(schema), [schema]);

  // ---- the text, its history and the spec it holds --------------------------------------
  const [text, setTextState] = useState(boot.text || newFlowText());
  const textRef = useRef(text);
  const past = useRef<Entry[]>([]);
  const future = useRef<Entry[]>([]);
  const [, bump] = useState(0);
  const parsed = useMemo(() => parseSpec(text), [text]);
  const lastGood = useRef<JsonObject>({});
  const spec: JsonObject = useMemo(() => {
    const v = parsed.value;
    if (!parsed.errors.length && v && typeof v === "object" && !Array.isArray(v)) lastGood.current = v;
    return lastGood.current;
  }, [parsed]);
  const graph: FlowGraph = useMemo(() => specToGraph(spec), [spec]);
  const stepIds = useMemo(() => stepsOf(spec).map((s) => String(s.id ?? "")), [spec]);

  const setText = useCallback((next: string, key: string | null) => {
    const now = Date.now();
    if (next === textRef.current) return;
    const top = past.current[past.current.length - 1];
    if (key && top && top.key === key && now - top.at < COALESCE_MS) {
      top.at = now; // keep the text from before this run of typing
    } else {
      past.current.push({ text: textRef.current, key, at: now });
      if (past.current.length > 200) past.current.shift();
    }
    future.current = [];
    textRef.current = next;
    setTextState(next);
    bump((n) => n + 1);
  }, []);

  /** Change the spec: the new value is written into the YAML where it changed. */
  const update = useCallback(
    (change: (spec: JsonObject) => JsonObject, key: string | null = null) => {
      if (readOnly) return;
      const current = parseSpec(textRef.current);
      const base = !current.errors.length && current.value && typeof current.value === "object" && !Array.isArray(current.value) ? (current.value as JsonObject) : lastGood.current;
      const next = change(base);
      setText(applySpec(textRef.current, next as Json), key);
    },
    [readOnly, setText],
  );

  const undo = useCallback(() => {
    const entry = past.current.pop();
    if (!entry) return;
    future.current.push({ text: textRef.current, key: null, at: Date.now() });
    textRef.current = entry.text;
    setTextState(entry.text);
    bump((n) => n + 1);
  }, []);
  const redo = useCallback(() => {
    const entry = future.current.pop();
    if (!entry) return;
    past.current.push({ text: textRef.current, key: null, at: Date.now() });
    textRef.current = entry.text;
    setTextState(entry.text);
    bump((n) => n + 1);
  }, []);

  // ---- validation through the server, as the author edits -------------------------------
  const [validation, setValidation] = useState<(Validation & { text: string }) | null>(null);
  const [offline, setOffline] = useState(!navigator.onLine);
  useEffect(() => {
    const on = () => setOffline(false);
    const off = () => setOffline(true);
    window.addEventListener("online", on);
    window.addEventListener("offline", off);
    return () => {
      window.removeEventListener("online", on);
      window.removeEventListener("offline", off);
    };
  }, []);
  useEffect(() => {
    if (parsed.errors.length || offline) return;
    let stale = false;
    const timer = setTimeout(async () => {
      try {
        const found = await validate(boot, text);
        if (!stale) setValidation({ ...found, text });
      } catch {
        // offline or the server is away: the status line says the spec is not checked
      }
    }, 300);
    return () => {
      stale = true;
      clearTimeout(timer);
    };
  }, [text, parsed.errors.length, offline, boot]);
  const current = validation && validation.text === text ? validation : null;
  const problems: Problem[] = current?.problems ?? [];
  const placed = useMemo(() => place(problems, stepIds), [problems, stepIds]);

  // ---- positions: ELK on load and for new steps; dragged positions kept -----------------
  const [positions, setPositions] = useState<Positions>({});
  const positionsRef = useRef(positions);
  positionsRef.current = positions;
  const { fitView, screenToFlowPosition } = useReactFlow();
  const tidy = useCallback(
    async (all: boolean) => {
      const found = await layout(graph);
      setPositions((prev) => (all ? found : { ...found, ...prev }));
      if (all) setTimeout(() => void fitView({ padding: 0.2, maxZoom: 1, duration: 0 }), 50);
    },
    [graph, fitView],
  );
  const laidOut = useRef(false);
  useEffect(() => {
    if (!laidOut.current) {
      laidOut.current = true;
      void tidy(true);
    } else if (graph.nodes.some((n) => !positionsRef.current[n.id])) {
      void tidy(false);
    }
  }, [graph, tidy]);

  // ---- React Flow's nodes and edges ------------------------------------------------------
  const [sizes, setSizes] = useState<Record<string, { width: number; height: number }>>({});
  const [selectedSteps, setSelectedSteps] = useState<string[]>([]);
  const [selectedEdges, setSelectedEdges] = useState<string[]>([]);
  const nodes: StepFlowNode[] = useMemo(
    () =>
      graph.nodes.map((n, i) => {
        const mine = placed.byStep.get(n.id) ?? [];
        return {
          id: n.id,
          type: "step",
          position: positions[n.id] ?? { x: 40 + (i % 4) * 220, y: 40 + Math.floor(i / 4) * 110 },
          measured: sizes[n.id], // the minimap and fitView need each node's size
          selected: selectedSteps.includes(n.id),
          data: {
            stepId: n.id,
            type: n.type,
            name: typeof n.step.name === "string" ? n.step.name : "",
            errors: mine.filter((p) => p.severity === "error").length,
            warnings: mine.filter((p) => p.severity === "warning").length,
            firstProblem: mine[0]?.message ?? "",
            plugin: !(typeOf.get(n.type)?.builtIn ?? true),
          },
        };
      }),
    [graph, positions, sizes, selectedSteps, placed, typeOf],
  );
  const edges: Edge[] = useMemo(
    () => graph.edges.map((e) => ({ ...e, selected: selectedEdges.includes(e.id), type: "smoothstep" })),
    [graph, selectedEdges],
  );

  const onNodesChange = useCallback((changes: NodeChange<StepFlowNode>[]) => {
    const moved = changes.filter((c) => c.type === "position" && c.position);
    if (moved.length) {
      setPositions((prev) => {
        const next = { ...prev };
        for (const c of moved) if (c.type === "position" && c.position) next[c.id] = c.position;
        return next;
      });
    }
    const measured = changes.filter((c) => c.type === "dimensions" && c.dimensions);
    if (measured.length) {
      setSizes((prev) => {
        const next = { ...prev };
        for (const c of measured) if (c.type === "dimensions" && c.dimensions) next[c.id] = c.dimensions;
        return next;
      });
    }
    const selects = changes.filter((c) => c.type === "select");
    if (selects.length) {
      setSelectedSteps((prev) => {
        let next = [...prev];
        for (const c of selects) {
          if (c.type !== "select") continue;
          next = next.filter((id) => id !== c.id);
          if (c.selected) next.push(c.id);
        }
        return next;
      });
    }
  }, []);
  const onEdgesChange = useCallback((changes: EdgeChange[]) => {
    setSelectedEdges((prev) => {
      let next = [...prev];
      for (const c of changes) {
        if (c.type !== "select") continue;
        next = next.filter((id) => id !== c.id);
        if (c.selected) next.push(c.id);
      }
      return next;
    });
  }, []);

  // ---- drawing edges; a cycle is refused while drawing ---------------------------------
  const [message, setMessage] = useState<{ text: string; kind: "refused" | "info" } | null>(null);
  const messageTimer = useRef<ReturnType<typeof setTimeout>>(undefined);
  const say = useCallback((text: string, kind: "refused" | "info" = "info") => {
    setMessage({ text, kind });
    clearTimeout(messageTimer.current);
    messageTimer.current = setTimeout(() => setMessage(null), 6000);
  }, []);
  const isValidConnection = useCallback(
    (c: Connection | Edge) => {
      if (readOnly || !c.source || !c.target) return false;
      if (graph.edges.some((e) => e.source === c.source && e.target === c.target)) return false;
      const cycle = cyclePath(graph.edges, c.source, c.target);
      if (cycle) {
        say(`Refused: ${c.target} depending on ${c.source} would make a cycle (${cycle.join(" → ")}).`, "refused");
        return false;
      }
      return true;
    },
    [graph, readOnly, say],
  );
  const onConnect = useCallback(
    (c: Connection) => {
      if (!isValidConnection(c)) return;
      update((s) => {
        const g = specToGraph(s);
        g.edges.push({ id: `${c.source}->${c.target}`, source: c.source, target: c.target });
        return graphToSpec(s, g);
      });
    },
    [isValidConnection, update],
  );

  // ---- adding, deleting, copying and pasting steps ------------------------------------
  const addStep = useCallback(
    (type: string, at?: { x: number; y: number }) => {
      const id = freeId(type, stepIds);
      update((s) => ({ ...s, steps: [...stepsOf(s), { id, type }] }));
      if (at) setPositions((prev) => ({ ...prev, [id]: at }));
      setSelectedSteps([id]);
      setSelectedEdges([]);
      say(`Added step ${id} (${type}). Fill in its form on the right.`);
    },
    [stepIds, update, say],
  );
  const removeSteps = useCallback(
    (ids: string[], edgeIds: string[] = []) => {
      update((s) => {
        const g = specToGraph(s);
        g.nodes = g.nodes.filter((n) => !ids.includes(n.id));
        g.edges = g.edges.filter((e) => !ids.includes(e.source) && !ids.includes(e.target) && !edgeIds.includes(e.id));
        return graphToSpec(s, g, ids);
      });
      setSelectedSteps((prev) => prev.filter((id) => !ids.includes(id)));
      setSelectedEdges([]);
    },
    [update],
  );
  const onDelete = useCallback(
    ({ nodes: gone, edges: cut }: { nodes: StepFlowNode[]; edges: Edge[] }) => {
      removeSteps(
        gone.map((n) => n.id),
        cut.map((e) => e.id),
      );
    },
    [removeSteps],
  );
  const clipboard = useRef<JsonObject[]>([]);
  const copy = useCallback(() => {
    const chosen = stepsOf(spec).filter((s) => selectedSteps.includes(String(s.id)));
    if (!chosen.length) return;
    clipboard.current = JSON.parse(JSON.stringify(chosen));
    say(`Copied ${chosen.length} step(s). Paste with Ctrl+V.`);
  }, [spec, selectedSteps, say]);
  const paste = useCallback(() => {
    const copies = clipboard.current;
    if (!copies.length || readOnly) return;
    const taken = [...stepIds];
    const renames = new Map<string, string>();
    for (const s of copies) {
      const id = freeId(`${String(s.id)}_copy`, taken);
      taken.push(id);
      renames.set(String(s.id), id);
    }
    const pasted = copies.map((s) => {
      const out: JsonObject = {};
      for (const [k, v] of Object.entries(s)) {
        if (k === "id") out.id = renames.get(String(v)) ?? String(v);
        else if (k === "depends_on" && Array.isArray(v)) {
          const deps = v.map((d) => renames.get(String(d)) ?? d);
          out.depends_on = deps;
        } else out[k] = v;
      }
      return out;
    });
    update((s) => ({ ...s, steps: [...stepsOf(s), ...pasted] }));
    setPositions((prev) => {
      const next = { ...prev };
      for (const [from, to] of renames) {
        const at = prev[from];
        if (at) next[to] = { x: at.x + 40, y: at.y + 40 };
      }
      return next;
    });
    setSelectedSteps([...renames.values()]);
    say(`Pasted ${pasted.length} step(s).`);
  }, [readOnly, stepIds, update, say]);

  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      if (isTyping(e.target)) return;
      const mod = e.ctrlKey || e.metaKey;
      const key = e.key.toLowerCase();
      if (mod && key === "z" && !e.shiftKey) {
        e.preventDefault();
        undo();
      } else if (mod && (key === "y" || (key === "z" && e.shiftKey))) {
        e.preventDefault();
        redo();
      } else if (mod && key === "c") {
        copy();
      } else if (mod && key === "v") {
        e.preventDefault();
        paste();
      } else if (!mod && key === "f") {
        void fitView({ padding: 0.2, maxZoom: 1, duration: 200 });
      }
    };
    window.addEventListener("keydown", onKey);
    return () => window.removeEventListener("keydown", onKey);
  }, [undo, redo, copy, paste, fitView]);

  const onDragOver = useCallback((e: DragEvent) => {
    if (e.dataTransfer.types.includes(DRAG_TYPE)) {
      e.preventDefault();
      e.dataTransfer.dropEffect = "copy";
    }
  }, []);
  const onDrop = useCallback(
    (e: DragEvent) => {
      const type = e.dataTransfer.getData(DRAG_TYPE);
      if (!type) return;
      e.preventDefault();
      addStep(type, screenToFlowPosition({ x: e.clientX - 90, y: e.clientY - 25 }));
    },
    [addStep, screenToFlowPosition],
  );

  // ---- the tabs, the forms and saving ---------------------------------------------------
  const [tab, setTab] = useState<"canvas" | "yaml">("canvas");
  const selectedStep = selectedSteps.length === 1 ? stepsOf(spec).find((s) => s.id === selectedSteps[0]) : undefined;
  const parseErrors = parsed.errors;
  const errorCount = current ? current.errors : 0;
  const warningCount = problems.length - errorCount;
  const [saving, setSaving] = useState(false);

  return (
    <div className={`editor${readOnly ? " read-only" : ""}`} data-valid={current ? String(current.valid) : "unknown"}>
      <Notices boot={boot} readOnly={readOnly} />
      <div className="editor-bar" role="toolbar" aria-label="Editor">
        <div className="tabs" role="tablist">
          <button role="tab" id="tab-canvas" aria-selected={tab === "canvas"} onClick={() => setTab("canvas")}>
            Canvas
          </button>
          <button role="tab" id="tab-yaml" aria-selected={tab === "yaml"} onClick={() => setTab("yaml")}>
            YAML
          </button>
        </div>
        {!readOnly && (
          <>
            <button id="undo" onClick={undo} disabled={!past.current.length} title="Undo (Ctrl+Z)">
              Undo
            </button>
            <button id="redo" onClick={redo} disabled={!future.current.length} title="Redo (Ctrl+Shift+Z)">
              Redo
            </button>
          </>
        )}
        <button id="tidy" onClick={() => void tidy(true)} title="Lay the graph out again">
          Tidy layout
        </button>
        <Status offline={offline} parseErrors={parseErrors.length} checked={Boolean(current)} errors={errorCount} warnings={warningCount} />
        {!readOnly && (
          <SaveButton
            boot={boot}
            text={text}
            spec={spec}
            disabled={saving || offline || errorCount > 0 || parseErrors.length > 0 || !current}
            why={
              offline
                ? "offline: saving needs the server"
                : parseErrors.length || errorCount
                  ? "fix the errors first"
                  : !current
                    ? "checking…"
                    : !boot.proposals
                      ? "this server has no flows repo"
                      : ""
            }
            setSaving={setSaving}
          />
        )}
      </div>
      {message && (
        <p id="editor-message" className={`editor-message ${message.kind}`} role="status">
          {message.text}
        </p>
      )}
      <div className="editor-body">
        {!readOnly && <Palette types={types} onAdd={(t) => addStep(t)} />}
        <div className="editor-main">
          <div className="canvas" hidden={tab !== "canvas"} onDragOver={onDragOver} onDrop={onDrop} aria-label="Flow canvas">
            <ReactFlow
              nodes={nodes}
              edges={edges}
              nodeTypes={NODE_TYPES}
              onNodesChange={onNodesChange}
              onEdgesChange={onEdgesChange}
              onConnect={onConnect}
              onDelete={onDelete}
              isValidConnection={isValidConnection}
              nodesConnectable={!readOnly}
              nodesDraggable
              elementsSelectable
              deleteKeyCode={readOnly ? null : ["Delete", "Backspace"]}
              multiSelectionKeyCode={["Shift", "Meta", "Control"]}
              minZoom={0.15}
              maxZoom={2}
              fitView
              fitViewOptions={{ padding: 0.2, maxZoom: 1 }}
              proOptions={{ hideAttribution: true }}
            >
              <Background gap={20} />
              <Controls showInteractive={false} />
              <MiniMap pannable zoomable ariaLabel="Minimap of the flow" nodeColor={(n) => ((n.data as { errors?: number }).errors ? "#fca5a5" : "#c7d2fe")} />
            </ReactFlow>
          </div>
          {tab === "yaml" && (
            <YamlTab text={text} readOnly={readOnly} problems={problems} parseErrors={parseErrors} onText={(t) => setText(t, "yaml")} />
          )}
        </div>
        <aside className="side" aria-label={selectedStep ? `Step ${String(selectedStep.id)}` : "Flow settings"}>
          {selectedStep ? (
            <StepForm
              key={String(selectedStep.id)}
              step={selectedStep}
              type={typeOf.get(String(selectedStep.type))}
              spec={spec}
              graph={graph}
              secrets={boot.secrets}
              readOnly={readOnly}
              problemsFor={(field) => placed.byField.get(`${String(selectedStep.id)}.${field}`) ?? []}
              stepProblems={(placed.byStep.get(String(selectedStep.id)) ?? []).filter((p) => p.code !== "missing-field" && !/^\$\.steps\[\d+\]\.[A-Za-z_]/.test(p.path))}
              onField={(field, value) =>
                update((s) => ({
                  ...s,
                  steps: stepsOf(s).map((st) => {
                    if (st.id !== selectedStep.id) return st;
                    const out = { ...st };
                    if (value === undefined) delete out[field];
                    else out[field] = value;
                    return out;
                  }),
                }), `${String(selectedStep.id)}.${field}`)
              }
              onRename={(to) => {
                const from = String(selectedStep.id);
                if (!to || to === from) return;
                if (stepIds.includes(to)) {
                  say(`There is already a step ${to}.`, "refused");
                  return;
                }
                update((s) => renameStep(s, from, to));
                setPositions((prev) => ({ ...prev, [to]: prev[from] }));
                setSelectedSteps([to]);
              }}
              onDelete={() => removeSteps([String(selectedStep.id)])}
            />
          ) : (
            <FlowPanel
              spec={spec}
              fields={flowSettings}
              readOnly={readOnly}
              problems={placed}
              onField={(field, value) =>
                update((s) => {
                  const out = { ...s };
                  if (value === undefined) delete out[field];
                  else out[field] = value;
                  return out;
                }, `flow.${field}`)
              }
            />
          )}
          {placed.other.length > 0 && (
            <section className="other-problems" aria-label="Problems of the whole spec">
              <h3>Problems</h3>
              <ul>
                {placed.other.map((p, i) => (
                  <li key={i} className={`sev-${p.severity}`}>
                    line {p.line}: {p.message}
                  </li>
                ))}
              </ul>
            </section>
          )}
        </aside>
      </div>
    </div>
  );
}

function Notices({ boot, readOnly }: { boot: Boot; readOnly: boolean }) {
  return (
    <>
      {readOnly && (
        <p className="notice" id="read-only-note">
          Read-only: changing flows needs the author role. You can look around, select steps and read the YAML.
        </p>
      )}
      {boot.shapeName && (
        <p className="notice" id="shape-note">
          This flow is written in the {boot.shapeName} shape. The editor shows it and saves it in Link Loom's canonical shape
          (the file in the flows repo is rewritten in that shape); the proposal's spec diff compares canonical shapes, so it
          shows only what you change.
        </p>
      )}
      {boot.mode === "flow" && boot.from === "version" && !readOnly && (
        <p className="notice" id="not-in-repo-note">
          This flow is not in the flows repo yet (it was applied directly); saving proposes it as flows/{boot.flowId}/flow.yaml.
        </p>
      )}
      {boot.mode === "proposal" && boot.proposal && (
        <p className="notice" id="revision-note">
          Saving commits revision {boot.proposal.revision + 1} of proposal “{boot.proposal.title}”; its checks run again and earlier
          approvals no longer count.
        </p>
      )}
    </>
  );
}

function Status(props: { offline: boolean; parseErrors: number; checked: boolean; errors: number; warnings: number }) {
  let text: string;
  let cls: string;
  if (props.parseErrors) {
    text = "YAML syntax error";
    cls = "bad";
  } else if (props.offline) {
    text = "offline: not checked";
    cls = "unknown";
  } else if (!props.checked) {
    text = "checking…";
    cls = "unknown";
  } else if (props.errors) {
    text = `${props.errors} error(s)${props.warnings ? `, ${props.warnings} warning(s)` : ""}`;
    cls = "bad";
  } else {
    text = props.warnings ? `valid, ${props.warnings} warning(s)` : "valid";
    cls = "good";
  }
  return (
    <span id="validation-status" className={`validation ${cls}`} role="status" aria-live="polite">
      {text}
    </span>
  );
}

function Palette({ types, onAdd }: { types: StepType[]; onAdd: (type: string) => void }) {
  return (
    <nav className="palette" aria-label="Step types">
      <h2>Steps</h2>
      <p className="muted">Drag onto the canvas, or press to add.</p>
      <ul>
        {types.map((t) => (
          <li key={t.type}>
            <button
              type="button"
              className={`palette-item${t.builtIn ? "" : " plugin"}`}
              data-step-type={t.type}
              draggable
              title={t.description}
              onDragStart={(e) => {
                e.dataTransfer.setData(DRAG_TYPE, t.type);
                e.dataTransfer.effectAllowed = "copy";
              }}
              onClick={() => onAdd(t.type)}
            >
              <b>{t.type}</b>
              {!t.builtIn && <span className="plugin-tag">plugin</span>}
              <span className="muted">{t.description}</span>
            </button>
          </li>
        ))}
      </ul>
    </nav>
  );
}

function StepForm(props: {
  step: JsonObject;
  type: StepType | undefined;
  spec: JsonObject;
  graph: FlowGraph;
  secrets: string[];
  readOnly: boolean;
  problemsFor: (field: string) => Problem[];
  stepProblems: Problem[];
  onField: (field: string, value: Json | undefined) => void;
  onRename: (to: string) => void;
  onDelete: () => void;
}) {
  const { step, type } = props;
  const id = String(step.id);
  const [draftId, setDraftId] = useState(id);
  const inputs = Object.keys((props.spec.inputs as JsonObject | undefined) ?? {});
  const upstream = upstreamOf(props.graph.edges, id);
  const completions = [
    ...inputs.map((i) => `inputs.${i}`),
    ...upstream.map((u) => `steps.${u}.output`),
    ...props.secrets.map((s) => `secrets.${s}`),
    "item",
    "run.id",
  ];
  const deps = upstream.length ? props.graph.edges.filter((e) => e.target === id).map((e) => e.source) : [];
  return (
    <form className="step-form" id="step-form" onSubmit={(e) => e.preventDefault()} data-step={id}>
      <h2>
        Step <code>{id}</code> <span className="muted">{String(step.type)}</span>
      </h2>
      {type?.description && <p className="muted">{type.description}</p>}
      {!type && <p className="problem-text">Unknown step type {String(step.type)}: the server knows no such type (a missing plugin?).</p>}
      {props.stepProblems.map((p, i) => (
        <p key={i} className="problem-text" role="alert">
          {p.message}
        </p>
      ))}
      <div className="form-field">
        <label htmlFor="field-id">
          id <abbr title="required" className="required">*</abbr>
        </label>
        <input
          id="field-id"
          value={draftId}
          disabled={props.readOnly}
          onChange={(e) => setDraftId(e.target.value)}
          onBlur={() => props.onRename(draftId.trim())}
          onKeyDown={(e) => {
            if (e.key === "Enter") props.onRename(draftId.trim());
          }}
        />
      </div>
      <p className="muted deps">
        Depends on: {deps.length ? deps.join(", ") : "nothing (runs first)"}. Draw edges on the canvas to change this.
      </p>
      {(type?.fields ?? []).map((field) => (
        <FieldInput
          key={field.name}
          field={field}
          value={step[field.name]}
          problems={props.problemsFor(field.name)}
          readOnly={props.readOnly}
          completions={field.name === "outputs" ? ["output", ...completions] : completions}
          idPrefix="field-"
          onChange={(value) => props.onField(field.name, value)}
        />
      ))}
      {!props.readOnly && (
        <button type="button" className="danger" id="delete-step" onClick={props.onDelete}>
          Delete step
        </button>
      )}
    </form>
  );
}

function FlowPanel(props: {
  spec: JsonObject;
  fields: ReturnType<typeof flowFields>;
  readOnly: boolean;
  problems: ReturnType<typeof place>;
  onField: (field: string, value: Json | undefined) => void;
}) {
  const order = ["id", "name", "description", "tags", "inputs", "schedules", "triggers", "defaults", "concurrency", "outputs"];
  const fields = [...props.fields].sort((a, b) => (order.indexOf(a.name) + 100) % 100 - (order.indexOf(b.name) + 100) % 100);
  return (
    <form className="flow-form" id="flow-form" onSubmit={(e) => e.preventDefault()}>
      <h2>Flow</h2>
      <p className="muted">Select a step to edit it. Inputs, schedules and triggers are YAML, as in the spec.</p>
      {fields.map((field) => (
        <FieldInput
          key={field.name}
          field={field}
          value={props.spec[field.name]}
          problems={props.problems.byField.get(`flow.${field.name}`) ?? []}
          readOnly={props.readOnly}
          completions={[]}
          idPrefix="flow-"
          onChange={(value) => props.onField(field.name, value)}
        />
      ))}
    </form>
  );
}

function YamlTab(props: { text: string; readOnly: boolean; problems: Problem[]; parseErrors: { message: string; line: number }[]; onText: (t: string) => void }) {
  const [draft, setDraft] = useState(props.text);
  const [draftErrors, setDraftErrors] = useState<{ message: string; line: number }[]>([]);
  const dirty = useRef(false);
  useEffect(() => {
    if (!dirty.current) setDraft(props.text);
  }, [props.text]);
  useEffect(() => {
    if (!dirty.current) return;
    const timer = setTimeout(() => {
      const parsed = parseSpec(draft);
      setDraftErrors(parsed.errors);
      if (!parsed.errors.length) {
        dirty.current = false;
        props.onText(draft);
      }
    }, 350);
    return () => clearTimeout(timer);
  }, [draft, props]);
  const shown = [...draftErrors.map((e) => ({ line: e.line, message: `YAML: ${e.message}`, severity: "error" })), ...props.problems];
  return (
    <div className="yaml-tab">
      <label htmlFor="yaml-text" className="sr-only">
        The spec as YAML
      </label>
      <textarea
        id="yaml-text"
        className="yaml-text"
        spellCheck={false}
        readOnly={props.readOnly}
        value={draft}
        onChange={(e) => {
          dirty.current = true;
          setDraft(e.target.value);
        }}
        onBlur={() => {
          // leaving the tab (or the box) commits at once what parses
          if (!dirty.current) return;
          const parsed = parseSpec(draft);
          setDraftErrors(parsed.errors);
          if (!parsed.errors.length) {
            dirty.current = false;
            props.onText(draft);
          }
        }}
      />
      <ul className="yaml-problems" id="yaml-problems">
        {shown.map((p, i) => (
          <li key={i} className={`sev-${p.severity}`}>
            line {p.line}: {p.message}
          </li>
        ))}
      </ul>
    </div>
  );
}

function SaveButton(props: {
  boot: Boot;
  text: string;
  spec: JsonObject;
  disabled: boolean;
  why: string;
  setSaving: (v: boolean) => void;
}) {
  const { boot } = props;
  const [open, setOpen] = useState(false);
  const [error, setError] = useState("");
  const flowId = String(props.spec.id ?? boot.flowId ?? "");
  const revision = boot.mode === "proposal" && boot.proposal;
  const [title, setTitle] = useState(boot.mode === "new" ? `New flow ${flowId}` : `Change ${flowId}`);
  const [description, setDescription] = useState("");
  const submit = async () => {
    props.setSaving(true);
    setError("");
    try {
      const body: Record<string, string> = revision
        ? { text: props.text, proposal_id: boot.proposal!.id, message: description }
        : { text: props.text, title, description };
      const done = await save(boot, body);
      window.location.assign(done.url);
    } catch (err) {
      setError(err instanceof CallFailed ? err.message : String(err));
      props.setSaving(false);
    }
  };
  const label = revision ? `Save as revision ${boot.proposal!.revision + 1}` : "Save as proposal";
  return (
    <>
      <button id="save" className="primary" disabled={props.disabled || !boot.proposals} title={props.why} onClick={() => setOpen(true)}>
        {label}
      </button>
      {props.why && (props.disabled || !boot.proposals) && <span className="muted save-why">{props.why}</span>}
      {open && (
        <div className="dialog-backdrop">
          <div className="dialog" role="dialog" aria-modal="true" aria-labelledby="save-title">
            <h2 id="save-title">{label}</h2>
            <p className="muted">
              {revision
                ? "The new revision runs the proposal's checks again: validation, the plan, the sandbox and the diff against production."
                : "A proposal is validated, run in the sandbox against recorded production traffic and diffed before anyone can promote it."}
            </p>
            {!revision && (
              <>
                <label htmlFor="save-title-input">Title</label>
                <input id="save-title-input" value={title} onChange={(e) => setTitle(e.target.value)} />
              </>
            )}
            <label htmlFor="save-description">{revision ? "What changed" : "Why (optional)"}</label>
            <textarea id="save-description" rows={3} value={description} onChange={(e) => setDescription(e.target.value)} />
            {error && (
              <p className="problem" role="alert" id="save-error">
                {error}
              </p>
            )}
            <div className="actions">
              <button id="save-confirm" className="primary" onClick={() => void submit()} disabled={!revision && !title.trim()}>
                {label}
              </button>
              <button onClick={() => setOpen(false)}>Cancel</button>
            </div>
          </div>
        </div>
      )}
    </>
  );
}

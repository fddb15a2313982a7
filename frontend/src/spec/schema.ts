// The server's flow spec JSON Schema (GET /editor/schema, what `loom schema` prints, plugins
// included) read as a palette of step types and, for each type, the form fields to show.

export type SchemaNode = {
  $ref?: string;
  type?: string | string[];
  enum?: unknown[];
  const?: unknown;
  anyOf?: SchemaNode[];
  oneOf?: SchemaNode[];
  items?: SchemaNode;
  properties?: Record<string, SchemaNode>;
  required?: string[];
  description?: string;
  title?: string;
  default?: unknown;
  discriminator?: { mapping?: Record<string, string> };
  minimum?: number;
  maximum?: number;
  pattern?: string;
};

export interface FlowSchema extends SchemaNode {
  $defs?: Record<string, SchemaNode>;
}

export type FieldKind = "enum" | "string" | "integer" | "number" | "boolean" | "duration" | "yaml";

export interface Field {
  name: string;
  title: string;
  description: string;
  required: boolean;
  kind: FieldKind;
  options: string[];
  default: unknown;
}

export interface StepType {
  type: string;
  title: string;
  description: string;
  fields: Field[];
  builtIn: boolean;
}

// Fields the form shows apart (or not at all): the canvas draws depends_on as edges.
const HIDDEN = new Set(["id", "type", "depends_on"]);
const FIRST = ["name", "description"];
export const BUILT_IN = new Set(["http", "shell", "delay", "transform", "condition", "merge", "llm", "flow", "task"]);

export function resolve(schema: FlowSchema, node: SchemaNode | undefined): SchemaNode {
  let at = node ?? {};
  for (let i = 0; i < 10 && at.$ref; i += 1) {
    const name = at.$ref.split("/").pop() ?? "";
    at = schema.$defs?.[name] ?? {};
  }
  return at;
}

/** The value's schema without a `null` alternative (pydantic's Optional). */
function unwrap(schema: FlowSchema, node: SchemaNode): SchemaNode {
  const at = resolve(schema, node);
  const alts = at.anyOf ?? null;
  if (alts) {
    const real = alts.filter((a) => resolve(schema, a).type !== "null");
    if (real.length === 1) return { ...resolve(schema, real[0]), description: at.description ?? real[0].description, default: at.default };
  }
  return at;
}

function kindOf(schema: FlowSchema, node: SchemaNode): { kind: FieldKind; options: string[] } {
  const at = unwrap(schema, node);
  if (at.enum) return { kind: "enum", options: at.enum.map(String) };
  const alts = at.oneOf ?? at.anyOf;
  if (alts) {
    const types = alts.map((a) => unwrap(schema, a).type);
    if (types.includes("string") && (types.includes("number") || types.includes("integer"))) return { kind: "duration", options: [] };
    return { kind: "yaml", options: [] };
  }
  switch (at.type) {
    case "string":
      return { kind: "string", options: [] };
    case "integer":
      return { kind: "integer", options: [] };
    case "number":
      return { kind: "number", options: [] };
    case "boolean":
      return { kind: "boolean", options: [] };
    default:
      return { kind: "yaml", options: [] };
  }
}

export function fieldsOf(schema: FlowSchema, def: SchemaNode, hidden: Set<string> = HIDDEN): Field[] {
  const props = def.properties ?? {};
  const required = new Set(def.required ?? []);
  const names = Object.keys(props).filter((n) => !hidden.has(n));
  // the type's own fields first (after name and description), the common policies after
  const common = new Set(["when", "join", "retry", "timeout", "outputs", "for_each", "max_parallel"]);
  const ordered = [
    ...FIRST.filter((n) => names.includes(n)),
    ...names.filter((n) => !FIRST.includes(n) && !common.has(n)),
    ...names.filter((n) => common.has(n)),
  ];
  return ordered.map((name) => {
    const node = props[name];
    const at = unwrap(schema, node);
    const { kind, options } = kindOf(schema, node);
    return {
      name,
      title: name.replace(/_/g, " "),
      description: at.description ?? resolve(schema, node).description ?? "",
      required: required.has(name),
      kind,
      options,
      default: at.default ?? resolve(schema, node).default,
    };
  });
}

/** Every step type the server knows (plugins included), with its form's fields. */
export function stepTypes(schema: FlowSchema): StepType[] {
  const items = resolve(schema, schema.properties?.steps?.items);
  const mapping = items.discriminator?.mapping ?? {};
  const refs: [string, SchemaNode][] = Object.entries(mapping).map(([type, ref]) => [type, { $ref: ref }]);
  if (!refs.length) {
    for (const alt of items.oneOf ?? []) {
      const def = resolve(schema, alt);
      const type = def.properties?.type?.const;
      if (typeof type === "string") refs.push([type, alt]);
    }
  }
  return refs
    .map(([type, ref]) => {
      const def = resolve(schema, ref);
      return {
        type,
        title: type,
        description: def.description ?? "",
        fields: fieldsOf(schema, def),
        builtIn: BUILT_IN.has(type),
      };
    })
    .sort((a, b) => Number(b.builtIn) - Number(a.builtIn) || a.type.localeCompare(b.type));
}

/** The flow's own fields (the side panel), from the schema's top level. */
export function flowFields(schema: FlowSchema): Field[] {
  return fieldsOf(schema, schema, new Set(["steps"])).map((f) => (f.name === "id" ? { ...f, kind: "string" } : f));
}

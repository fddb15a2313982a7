// The spec's YAML text is the editor's source of truth. Every edit made on the canvas or in a
// form produces a new spec value; `applySpec` writes that value back into the author's YAML
// document node by node, so keys keep their order, comments and quoting stay where they were,
// and a small change is a small text diff. Only the nodes whose values changed are touched.

import {
  Document,
  isMap,
  isScalar,
  isSeq,
  parseDocument,
  Scalar,
  YAMLMap,
  YAMLSeq,
  type Node as YamlNode,
  type ToStringOptions,
} from "yaml";

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
export type JsonObject = { [key: string]: Json };

export interface ParsedSpec {
  value: Json;
  errors: { message: string; line: number; column: number }[];
}

/** Parse YAML (or JSON) text into a plain value, with YAML syntax errors and their lines. */
export function parseSpec(text: string): ParsedSpec {
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  const errors = doc.errors.map((e) => ({
    message: e.message.split("\n")[0],
    line: e.linePos?.[0]?.line ?? 1,
    column: e.linePos?.[0]?.col ?? 1,
  }));
  if (errors.length) return { value: null, errors };
  return { value: (doc.toJS({ maxAliasCount: 100 }) ?? null) as Json, errors };
}

/** Formatting options that reproduce how this text was written (indent, sequences, width). */
export function formatOf(text: string): ToStringOptions {
  const indents = [...text.matchAll(/^( +)\S/gm)].map((m) => m[1].length);
  const indent = indents.length ? Math.min(...indents) : 2;
  // "key:\n- item" (the sequence at its key's column) vs "key:\n  - item"
  const indentless = /^( *)[^\s#-][^\n]*:[ \t]*\n\1- /m.test(text);
  return {
    indent: Math.max(1, Math.min(indent, 8)),
    indentSeq: !indentless,
    lineWidth: 0, // never re-fold the author's long lines
    minContentWidth: 0,
    flowCollectionPadding: false, // [a, b] as PyYAML and people write it
    nullStr: "null",
  };
}

function equal(a: Json | undefined, b: Json | undefined): boolean {
  if (a === b) return true;
  if (a === null || b === null || a === undefined || b === undefined) return false;
  if (Array.isArray(a)) {
    return Array.isArray(b) && a.length === b.length && a.every((x, i) => equal(x, b[i]));
  }
  if (typeof a === "object" && typeof b === "object" && !Array.isArray(b)) {
    const ka = Object.keys(a);
    const kb = Object.keys(b);
    return ka.length === kb.length && ka.every((k, i) => k === kb[i] && equal(a[k], b[k]));
  }
  return false;
}

function isObject(v: Json | undefined): v is JsonObject {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

const SHORT_LIST = 60; // characters: short lists of plain values are written inline, [a, b]

/** A new node for a value, in the style of the canonical YAML (`loom convert`). */
function create(doc: Document, value: Json): YamlNode {
  const node = doc.createNode(value) as YamlNode;
  const style = (n: unknown): void => {
    if (isSeq(n)) {
      const items = n.items as unknown[];
      const plain = items.every((i) => isScalar(i) && typeof i.value !== "object" && !String(i.value).includes("\n"));
      const width = items.reduce<number>((sum, i) => sum + String(isScalar(i) ? i.value : "").length + 2, 0);
      n.flow = plain && items.length > 0 && width <= SHORT_LIST;
      items.forEach(style);
    } else if (isMap(n)) {
      n.flow = false;
      for (const pair of n.items) style(pair.value);
    } else if (isScalar(n) && typeof n.value === "string" && n.value.includes("\n")) {
      n.type = Scalar.BLOCK_LITERAL;
    }
  };
  style(node);
  return node;
}

/** Write `after` into `node` (whose value was `before`); returns the node to keep there. */
function patch(doc: Document, node: unknown, before: Json | undefined, after: Json): unknown {
  if (equal(before, after)) return node;
  if (isObject(after) && isObject(before) && isMap(node)) {
    patchMap(doc, node, before, after);
    return node;
  }
  if (Array.isArray(after) && Array.isArray(before) && isSeq(node)) {
    patchSeq(doc, node, before, after);
    return node;
  }
  if (isScalar(node) && (after === null || typeof after !== "object")) {
    if (typeof after === "string" && after.includes("\n") && node.type !== Scalar.QUOTE_DOUBLE) {
      node.type = Scalar.BLOCK_LITERAL;
    } else if (typeof after === "string" && !after.includes("\n") && (node.type === Scalar.BLOCK_LITERAL || node.type === Scalar.BLOCK_FOLDED)) {
      node.type = undefined;
    }
    node.value = after;
    return node;
  }
  const fresh = create(doc, after);
  // keep the comments that were attached to the node being replaced
  const old = node as { commentBefore?: string | null; comment?: string | null; spaceBefore?: boolean } | null;
  const made = fresh as { commentBefore?: string | null; comment?: string | null; spaceBefore?: boolean };
  if (old && typeof old === "object") {
    made.commentBefore = old.commentBefore;
    made.comment = old.comment;
    made.spaceBefore = old.spaceBefore;
  }
  return fresh;
}

function keyOf(pair: { key: unknown }): string {
  const key = pair.key;
  return String(isScalar(key) ? key.value : key);
}

function patchMap(doc: Document, node: YAMLMap, before: JsonObject, after: JsonObject): void {
  node.items = node.items.filter((pair) => keyOf(pair) in after);
  for (const pair of node.items) {
    const key = keyOf(pair);
    pair.value = patch(doc, pair.value, before[key], after[key]) as typeof pair.value;
  }
  for (const [key, value] of Object.entries(after)) {
    if (!(key in before)) node.items.push(doc.createPair(key, create(doc, value)) as (typeof node.items)[number]);
  }
}

function idOf(v: Json | undefined): string | null {
  return isObject(v) && typeof v.id === "string" ? v.id : null;
}

function patchSeq(doc: Document, node: YAMLSeq, before: Json[], after: Json[]): void {
  const items = node.items as unknown[];
  const keyed = before.length > 0 && after.length > 0 && [...before, ...after].every((v) => idOf(v) !== null);
  if (keyed) {
    // steps (and anything with ids): match items by id, so a removed or added step touches
    // only its own lines, and each kept step keeps its node (and its comments).
    const byId = new Map<string, { node: unknown; value: Json }>();
    before.forEach((v, i) => byId.set(idOf(v) as string, { node: items[i], value: v }));
    node.items = after.map((v) => {
      const found = byId.get(idOf(v) as string);
      return found ? patch(doc, found.node, found.value, v) : create(doc, v);
    }) as typeof node.items;
    return;
  }
  if (before.length === after.length) {
    node.items = after.map((v, i) => patch(doc, items[i], before[i], v)) as typeof node.items;
    return;
  }
  // lists of values (depends_on, tags): reuse the node of an equal value (its quoting).
  const pool = before.map((v, i) => ({ v, node: items[i], used: false }));
  node.items = after.map((v) => {
    const reuse = pool.find((p) => !p.used && equal(p.v, v));
    if (reuse) {
      reuse.used = true;
      return reuse.node;
    }
    return create(doc, v);
  }) as typeof node.items;
}

/**
 * The text of `text`'s document with its value changed to `after`.
 *
 * Changes are spliced into the text at the source ranges of the nodes they concern: a changed
 * scalar is rewritten in its own quoting style, a new key or list item is inserted after its
 * last sibling at its siblings' indentation, a removed one takes its lines with it. Everything
 * else, comments and blank lines included, stays byte for byte. If a splice ever fails to give
 * the wanted value, the whole document is re-written instead (comments and order still kept).
 */
export function applySpec(text: string, after: Json): string {
  if (!text.trim()) return stringify(after);
  const doc = parseDocument(text, { uniqueKeys: true });
  if (doc.errors.length) throw new Error(`the YAML has errors: ${doc.errors[0].message}`);
  const before = (doc.toJS({ maxAliasCount: 100 }) ?? null) as Json;
  if (equal(before, after)) return text;
  const splicer = new Splicer(text, doc);
  try {
    splicer.node(doc.contents, before, after, 0);
    const out = splicer.result();
    const check = parseSpec(out);
    if (check.errors.length === 0 && equal(check.value, after)) return out;
  } catch {
    // fall through to the whole-document rewrite
  }
  doc.contents = patch(doc, doc.contents, before, after) as typeof doc.contents;
  return doc.toString(formatOf(text));
}

interface Edit {
  start: number;
  end: number;
  text: string;
}

type Ranged = { range?: [number, number, number] | null };

class Splicer {
  private edits: Edit[] = [];
  private format: ToStringOptions;
  private step: number;

  constructor(
    private text: string,
    private doc: Document,
  ) {
    this.format = formatOf(text);
    this.step = this.format.indent ?? 2;
  }

  result(): string {
    const sorted = [...this.edits].sort((a, b) => b.start - a.start || b.end - a.end);
    let out = this.text;
    let limit = Infinity;
    for (const e of sorted) {
      if (e.end > limit) throw new Error("overlapping edits");
      out = out.slice(0, e.start) + e.text + out.slice(e.end);
      limit = e.start;
    }
    return out;
  }

  private range(node: unknown): [number, number, number] {
    const r = (node as Ranged | null)?.range;
    if (!r) throw new Error("a node without a source range");
    return r;
  }

  private lineStart(pos: number): number {
    return this.text.lastIndexOf("\n", pos - 1) + 1;
  }

  /** The position just after the line holding `pos - 1` (where a following line starts). */
  private lineAfter(pos: number): number {
    if (pos > 0 && this.text[pos - 1] === "\n") return pos;
    const nl = this.text.indexOf("\n", pos);
    return nl < 0 ? this.text.length : nl + 1;
  }

  private column(pos: number): number {
    return pos - this.lineStart(pos);
  }

  /** Lines of a rendered block value, each indented by `indent` spaces. */
  private block(value: Json, indent: number): string {
    const rendered = stringify(value, this.format).replace(/\n$/, "");
    return rendered
      .split("\n")
      .map((line) => (line ? " ".repeat(indent) + line : line))
      .join("\n");
  }

  /** How a value reads after `key:` in block context: ` inline` or a newline and a block. */
  private afterKey(value: Json, keyColumn: number): string {
    if (inline(value)) return " " + stringify(value, this.format).replace(/\n$/, "");
    const indent = keyColumn + this.step;
    if (Array.isArray(value) && this.format.indentSeq === false) return "\n" + this.block(value, keyColumn);
    return "\n" + this.block(value, indent);
  }

  node(node: unknown, before: Json | undefined, after: Json, keyColumn: number): void {
    if (equal(before, after)) return;
    if (isScalar(node) && scalarLike(after) && scalarLike(before)) return this.scalar(node, after, keyColumn);
    if (isMap(node) && !node.flow && isObject(before) && isObject(after)) return this.map(node, before, after);
    if (isSeq(node) && !node.flow && Array.isArray(before) && Array.isArray(after)) return this.seq(node, before, after);
    const wasEmpty = (Array.isArray(before) && before.length === 0) || (isObject(before) && Object.keys(before).length === 0);
    const fits = inline(after) || (!wasEmpty && flatItems(after));
    if ((isMap(node) || isSeq(node)) && node.flow && fits && !Array.isArray(after) === !Array.isArray(before)) {
      const [start, end] = this.range(node);
      const flow = create(this.doc, after);
      (flow as { flow?: boolean }).flow = true;
      const rendered = String(this.doc.createNode(null) && renderFlow(this.doc, flow, this.format));
      if (!rendered.includes("\n")) {
        this.edits.push({ start, end, text: rendered });
        return;
      }
    }
    throw new Replace();
  }

  private scalar(node: Scalar, after: Json, keyColumn: number): void {
    const [start, end] = this.range(node);
    const block = node.type === Scalar.BLOCK_LITERAL || node.type === Scalar.BLOCK_FOLDED;
    if (block || (typeof after === "string" && after.includes("\n"))) {
      if (typeof after !== "string" || !after.includes("\n")) throw new Replace();
      const indent = keyColumn + this.step;
      const body = stringify(after, this.format).replace(/\n$/, "");
      const lines = body.split("\n");
      const head = lines[0];
      const rest = lines.slice(1).map((l) => (l.trim() ? " ".repeat(indent) + l.replace(/^ {2}/, "") : ""));
      const textEnd = this.text[end - 1] === "\n" ? "\n" : "";
      this.edits.push({ start, end, text: [head, ...rest].join("\n") + textEnd });
      return;
    }
    const fresh = new Scalar(after);
    fresh.type = node.type;
    const rendered = renderFlow(this.doc, fresh, this.format);
    if (rendered.includes("\n")) throw new Replace();
    this.edits.push({ start, end, text: rendered });
  }

  private map(node: YAMLMap, before: JsonObject, after: JsonObject): void {
    const pairs = node.items;
    if (!pairs.length) throw new Replace();
    const column = this.column(this.range(pairs[0].key)[0]);
    let last = 0;
    for (const pair of pairs) {
      const key = keyOf(pair);
      const keyRange = this.range(pair.key);
      const valueEnd = pair.value ? this.range(pair.value)[1] : keyRange[1];
      last = Math.max(last, valueEnd);
      if (!(key in after)) {
        this.edits.push({ start: this.lineStart(keyRange[0]), end: this.lineAfter(valueEnd), text: "" });
        continue;
      }
      if (equal(before[key], after[key])) continue;
      try {
        if (!pair.value) throw new Replace();
        this.node(pair.value, before[key], after[key], column);
      } catch (err) {
        if (!(err instanceof Replace)) throw err;
        const end = pair.value ? this.range(pair.value)[1] : keyRange[1];
        const trail = this.text[end - 1] === "\n" ? "\n" : "";
        this.edits.push({ start: keyRange[1], end, text: ":" + this.afterKey(after[key], column) + trail });
      }
    }
    const added = Object.keys(after).filter((k) => !(k in before));
    if (added.length) {
      const at = this.lineAfter(last);
      const lead = at === this.text.length && !this.text.endsWith("\n") ? "\n" : "";
      const lines = added.map((k) => " ".repeat(column) + renderKey(this.doc, k, this.format) + ":" + this.afterKey(after[k], column));
      this.edits.push({ start: at, end: at, text: lead + lines.join("\n") + "\n" });
    }
  }

  private seq(node: YAMLSeq, before: Json[], after: Json[]): void {
    const items = node.items as unknown[];
    if (!items.length) throw new Replace();
    const first = this.range(items[0])[0];
    const dash = this.text.lastIndexOf("-", first - 1);
    if (dash < 0 || dash < this.lineStart(first)) throw new Replace();
    const column = this.column(dash);
    const keyed = [...before, ...after].every((v) => idOf(v) !== null);
    let matched: Map<number, number>; // index in after → index in before
    if (keyed) {
      const at = new Map(before.map((v, i) => [idOf(v) as string, i]));
      matched = new Map();
      after.forEach((v, i) => {
        const j = at.get(idOf(v) as string);
        if (j !== undefined) matched.set(i, j);
      });
      const order = [...matched.values()];
      if (order.some((j, i) => i > 0 && j < order[i - 1])) throw new Replace(); // reordered
    } else if (before.length === after.length) {
      matched = new Map(after.map((_, i) => [i, i]));
    } else {
      throw new Replace();
    }
    const kept = new Set(matched.values());
    items.forEach((item, j) => {
      if (!kept.has(j)) {
        const [start, end] = this.range(item);
        this.edits.push({ start: this.lineStart(start), end: this.lineAfter(end), text: "" });
      }
    });
    for (const [i, j] of matched) this.node(items[j], before[j], after[i], column + 2 - this.step);
    // new items go after the kept item that precedes them in `after` (or after the last item)
    const lastEnd = this.range(items[items.length - 1])[1];
    const inserts = new Map<number, string[]>();
    let anchor = lastEnd;
    after.forEach((v, i) => {
      const j = matched.get(i);
      if (j !== undefined) {
        anchor = this.range(items[j])[1];
        return;
      }
      const rendered = this.block([v], column).replace(/^ */, " ".repeat(column));
      const at = this.lineAfter(anchor);
      inserts.set(at, [...(inserts.get(at) ?? []), rendered]);
    });
    for (const [at, texts] of inserts) {
      const lead = at === this.text.length && !this.text.endsWith("\n") ? "\n" : "";
      this.edits.push({ start: at, end: at, text: lead + texts.join("\n") + "\n" });
    }
  }
}

class Replace extends Error {
  constructor() {
    super("replace the whole value");
  }
}

function scalarLike(v: Json | undefined): boolean {
  return v === null || (v !== undefined && typeof v !== "object");
}

/** A list or mapping of plain values (kept on one line when it was written on one). */
function flatItems(value: Json): boolean {
  const items = Array.isArray(value) ? value : isObject(value) ? Object.values(value) : [];
  return items.every((v) => scalarLike(v) && !(typeof v === "string" && v.includes("\n")));
}

function inline(value: Json): boolean {
  if (scalarLike(value)) return !(typeof value === "string" && value.includes("\n"));
  if (Array.isArray(value)) {
    const d = new Document();
    const node = create(d, value);
    return isSeq(node) && Boolean(node.flow);
  }
  return isObject(value) && Object.keys(value).length === 0;
}

function renderFlow(doc: Document, node: unknown, format: ToStringOptions): string {
  void doc;
  const d = new Document();
  d.contents = node as typeof d.contents;
  return d.toString(format).replace(/\n$/, "");
}

function renderKey(doc: Document, key: string, format: ToStringOptions): string {
  return renderFlow(doc, new Scalar(key), format);
}

/** A new document for a value (a flow made from nothing), in the canonical style. */
export function stringify(value: Json, format: ToStringOptions = formatOf("")): string {
  const doc = new Document();
  doc.contents = create(doc, value) as typeof doc.contents;
  return doc.toString(format);
}

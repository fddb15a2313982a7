// Forms generated from the step types' JSON schemas: one input per field (a select for an
// enum, a number input for numbers, a YAML box for objects and lists), required fields marked,
// the validator's problems under their field, and completion of template references.
import { useEffect, useId, useRef, useState, type KeyboardEvent } from "react";
import type { Field } from "../spec/schema";
import type { Problem } from "../spec/problems";
import { parseSpec, stringify, type Json } from "../spec/yamlText";

export interface FieldProps {
  field: Field;
  value: Json | undefined;
  problems: Problem[];
  readOnly: boolean;
  completions: string[];
  idPrefix: string;
  onChange: (value: Json | undefined) => void;
}

function ProblemList({ problems, id }: { problems: Problem[]; id: string }) {
  if (!problems.length) return null;
  return (
    <ul className="field-problems" id={id} role="alert">
      {problems.map((p, i) => (
        <li key={i} className={`sev-${p.severity}`}>
          {p.message}
          {p.hint ? <span className="hint"> ({p.hint})</span> : null}
        </li>
      ))}
    </ul>
  );
}

export function FieldInput({ field, value, problems, readOnly, completions, idPrefix, onChange }: FieldProps) {
  const id = `${idPrefix}${field.name}`;
  const problemId = `${id}-problems`;
  const invalid = problems.some((p) => p.severity === "error");
  const common = {
    id,
    disabled: readOnly,
    "aria-invalid": invalid || undefined,
    "aria-describedby": problems.length ? problemId : undefined,
  };
  const fallback = field.default === undefined || field.default === null ? "" : String(field.default);
  let input;
  switch (field.kind) {
    case "enum":
      input = (
        <select {...common} value={value === undefined || value === null ? "" : String(value)} onChange={(e) => onChange(e.target.value || undefined)}>
          {!field.required && <option value="">{fallback ? `(default: ${fallback})` : "(none)"}</option>}
          {field.required && value === undefined && <option value="">(choose)</option>}
          {field.options.map((o) => (
            <option key={o} value={o}>
              {o}
            </option>
          ))}
        </select>
      );
      break;
    case "boolean":
      input = (
        <select
          {...common}
          value={value === undefined ? "" : String(value)}
          onChange={(e) => onChange(e.target.value === "" ? undefined : e.target.value === "true")}
        >
          <option value="">{fallback ? `(default: ${fallback})` : "(default)"}</option>
          <option value="true">true</option>
          <option value="false">false</option>
        </select>
      );
      break;
    case "integer":
    case "number":
      input = (
        <NumberInput common={common} value={value} kind={field.kind} placeholder={fallback} onChange={onChange} />
      );
      break;
    case "string":
    case "duration":
      input = (
        <TemplateInput
          common={common}
          value={value === undefined || value === null ? "" : String(value)}
          placeholder={fallback}
          completions={completions}
          onChange={(text) => {
            if (text === "") onChange(field.required ? "" : undefined); // a required key stays where it is
            else if (field.kind === "duration" && /^\d+(\.\d+)?$/.test(text)) onChange(Number(text));
            else onChange(text);
          }}
        />
      );
      break;
    default:
      input = <YamlInput common={common} value={value} onChange={onChange} />;
  }
  return (
    <div className={`form-field${invalid ? " invalid" : ""}`} data-field={field.name}>
      <label htmlFor={id}>
        {field.title}
        {field.required && (
          <abbr title="required" className="required">
            {" "}*
          </abbr>
        )}
      </label>
      {input}
      {field.description && <small className="muted">{field.description}</small>}
      <ProblemList problems={problems} id={problemId} />
    </div>
  );
}

type Common = { id: string; disabled: boolean; "aria-invalid"?: boolean; "aria-describedby"?: string };

function NumberInput({ common, value, kind, placeholder, onChange }: { common: Common; value: Json | undefined; kind: string; placeholder: string; onChange: (v: Json | undefined) => void }) {
  const [draft, setDraft] = useState(value === undefined || value === null ? "" : String(value));
  useEffect(() => setDraft(value === undefined || value === null ? "" : String(value)), [value]);
  return (
    <input
      {...common}
      type="number"
      step={kind === "integer" ? 1 : "any"}
      value={draft}
      placeholder={placeholder}
      onChange={(e) => {
        setDraft(e.target.value);
        const n = e.target.value === "" ? undefined : Number(e.target.value);
        if (n === undefined || !Number.isNaN(n)) onChange(n);
      }}
    />
  );
}

/** A YAML box for an object or list value; it is written back when it parses. */
export function YamlInput({ common, value, onChange, rows }: { common: Common; value: Json | undefined; onChange: (v: Json | undefined) => void; rows?: number }) {
  const render = (v: Json | undefined) => (v === undefined ? "" : stringify(v).replace(/\n$/, ""));
  const [draft, setDraft] = useState(render(value));
  const [error, setError] = useState("");
  const focused = useRef(false);
  useEffect(() => {
    if (!focused.current) setDraft(render(value));
  }, [value]);
  return (
    <>
      <textarea
        {...common}
        className="yaml-input"
        spellCheck={false}
        rows={rows ?? Math.min(10, Math.max(2, draft.split("\n").length + 1))}
        value={draft}
        onFocus={() => (focused.current = true)}
        onBlur={() => {
          focused.current = false;
          setDraft(render(value));
          setError("");
        }}
        onChange={(e) => {
          setDraft(e.target.value);
          if (!e.target.value.trim()) {
            setError("");
            onChange(undefined);
            return;
          }
          const parsed = parseSpec(e.target.value);
          if (parsed.errors.length) setError(`YAML: ${parsed.errors[0].message} (line ${parsed.errors[0].line})`);
          else {
            setError("");
            onChange(parsed.value);
          }
        }}
      />
      {error && <small className="problem-text">{error}</small>}
    </>
  );
}

const OPEN = /\{\{\s*([\w.\[\]'"-]*)$/;

/** A text input that completes template references after "{{": inputs, upstream outputs, secrets. */
export function TemplateInput({ common, value, placeholder, completions, onChange }: { common: Common; value: string; placeholder: string; completions: string[]; onChange: (text: string) => void }) {
  const [open, setOpen] = useState<{ partial: string; items: string[] } | null>(null);
  const [active, setActive] = useState(0);
  const input = useRef<HTMLInputElement>(null);
  const listId = useId();

  const refresh = (text: string, caret: number) => {
    const found = OPEN.exec(text.slice(0, caret));
    if (!found) return setOpen(null);
    const partial = found[1];
    const items = completions.filter((c) => c.startsWith(partial) && c !== partial).slice(0, 12);
    setActive(0);
    setOpen(items.length ? { partial, items } : null);
  };

  const accept = (item: string) => {
    const el = input.current;
    if (!el || !open) return;
    const caret = el.selectionStart ?? el.value.length;
    const before = el.value.slice(0, caret - open.partial.length);
    const after = el.value.slice(caret);
    const closing = /^\s*\}\}/.test(after) ? "" : " }}";
    const text = before + item + closing + after;
    onChange(text);
    setOpen(null);
    requestAnimationFrame(() => {
      const at = (before + item + closing).length;
      el.setSelectionRange(at, at);
      el.focus();
    });
  };

  const onKeyDown = (e: KeyboardEvent<HTMLInputElement>) => {
    if (!open) return;
    if (e.key === "ArrowDown") {
      e.preventDefault();
      setActive((a) => (a + 1) % open.items.length);
    } else if (e.key === "ArrowUp") {
      e.preventDefault();
      setActive((a) => (a - 1 + open.items.length) % open.items.length);
    } else if (e.key === "Enter" || e.key === "Tab") {
      e.preventDefault();
      accept(open.items[active]);
    } else if (e.key === "Escape") {
      e.preventDefault();
      setOpen(null);
    }
  };

  return (
    <div className="template-input">
      <input
        {...common}
        ref={input}
        type="text"
        value={value}
        placeholder={placeholder}
        autoComplete="off"
        role="combobox"
        aria-expanded={Boolean(open)}
        aria-controls={listId}
        aria-autocomplete="list"
        onChange={(e) => {
          onChange(e.target.value);
          refresh(e.target.value, e.target.selectionStart ?? e.target.value.length);
        }}
        onKeyDown={onKeyDown}
        onBlur={() => setTimeout(() => setOpen(null), 150)}
      />
      {open && (
        <ul className="completions" id={listId} role="listbox">
          {open.items.map((item, i) => (
            <li
              key={item}
              role="option"
              aria-selected={i === active}
              className={i === active ? "active" : ""}
              onMouseDown={(e) => {
                e.preventDefault();
                accept(item);
              }}
            >
              {item}
            </li>
          ))}
        </ul>
      )}
    </div>
  );
}

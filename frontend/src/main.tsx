// The visual flow editor's entry point: reads what the page says (editor-boot), fetches the
// step-type schema and starts the app in #editor-root.
import "@xyflow/react/dist/style.css";
import "./ui/editor.css";
import { StrictMode } from "react";
import { createRoot } from "react-dom/client";
import { fetchSchema, type Boot } from "./ui/api";
import { App } from "./ui/App";

async function start(): Promise<void> {
  const root = document.getElementById("editor-root");
  const bootEl = document.getElementById("editor-boot");
  if (!root || !bootEl) return;
  const boot = JSON.parse(bootEl.textContent ?? "{}") as Boot;
  try {
    const schema = await fetchSchema(boot);
    createRoot(root).render(
      <StrictMode>
        <App boot={boot} schema={schema} />
      </StrictMode>,
    );
  } catch (err) {
    root.innerHTML = "";
    const p = document.createElement("p");
    p.className = "problem";
    p.textContent = `The editor could not load the step types from the server: ${String(err)}. Reload the page.`;
    root.appendChild(p);
  }
}

void start();

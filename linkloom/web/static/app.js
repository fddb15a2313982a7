// Link Loom web UI: live run updates (SSE), the step drawer, keyboard handling, desktop
// notifications for watched runs, and the dashboard's instant filter. No build step.
"use strict";

(function () {
  const STATES = ["pending", "queued", "running", "retrying", "succeeded", "failed", "skipped", "cancelled", "none"];
  const WATCH_KEY = "loom.watched";

  function watched() {
    try { return JSON.parse(localStorage.getItem(WATCH_KEY) || "[]"); } catch (e) { return []; }
  }
  function setWatched(ids) { localStorage.setItem(WATCH_KEY, JSON.stringify(ids.slice(-50))); }

  function notifyEnd(runId, flowId, status) {
    const ids = watched();
    if (!ids.includes(runId)) return;
    setWatched(ids.filter((x) => x !== runId));
    if (!("Notification" in window) || Notification.permission !== "granted") return;
    const note = new Notification("Run " + status.toLowerCase() + ": " + flowId, {
      body: "Run " + runId + " of " + flowId + " ended " + status + ".",
      tag: "loom-run-" + runId,
    });
    note.onclick = () => { window.focus(); window.location.href = "/runs/" + runId; };
    document.documentElement.dataset.notified = runId + ":" + status;
  }

  function setNodeState(root, stepId, state, items) {
    root.querySelectorAll('g.node[data-step="' + CSS.escape(stepId) + '"]').forEach((g) => {
      STATES.forEach((s) => g.classList.remove("st-" + s));
      g.classList.add("st-" + state);
      const label = g.querySelector(".state");
      if (label) label.textContent = items ? state + " " + items : state;
      const link = g.closest("a.node-link");
      if (link) link.setAttribute("aria-label", "step " + stepId + ": " + state);
    });
  }

  // ---- the run page ------------------------------------------------------------------
  function runPage(page) {
    const runId = page.dataset.run;
    const flowId = page.dataset.flow;
    const drawer = document.getElementById("drawer");
    const panels = document.getElementById("run-panels");
    const log = document.getElementById("log");
    const statusEl = document.getElementById("run-status");
    let opener = null;
    let openStep = new URLSearchParams(location.search).get("step");
    let refreshTimer = null;

    let drawerToo = false;
    function refreshPanels(withDrawer = true) {
      clearTimeout(refreshTimer);
      drawerToo = drawerToo || withDrawer;  // a debounced refresh keeps what it was asked
      refreshTimer = setTimeout(async () => {
        const reloadDrawer = drawerToo;
        drawerToo = false;
        const res = await fetch(page.dataset.panels, { credentials: "same-origin" });
        if (!res.ok) return;
        // Keep keyboard focus on the same link when the panels are redrawn.
        const links = () => Array.from(panels.querySelectorAll("a[data-step]"));
        const focusedAt = links().indexOf(document.activeElement);
        panels.innerHTML = await res.text();
        if (focusedAt >= 0 && links()[focusedAt]) links()[focusedAt].focus();
        if (reloadDrawer && openStep && !drawer.hidden) loadDrawer(openStep, false);
      }, 120);
    }

    function setRunStatus(status) {
      page.dataset.status = status;
      const lower = status.toLowerCase();
      statusEl.innerHTML = "";
      const badge = document.createElement("span");
      badge.className = "badge st-" + lower;
      badge.textContent = lower;
      statusEl.appendChild(badge);
      const terminal = ["SUCCEEDED", "FAILED", "CANCELLED"].includes(status);
      page.querySelectorAll('[data-when="active"]').forEach((f) => { f.hidden = terminal; });
      page.querySelectorAll('[data-when="failed"]').forEach((f) => { f.hidden = !["FAILED", "CANCELLED"].includes(status); });
      const watch = document.getElementById("watch");
      if (watch && terminal) watch.hidden = true;
    }

    function appendLog(line) {
      const nearBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
      const li = document.createElement("li");
      li.className = "lvl-" + line.level + " kind-" + line.kind;
      const time = document.createElement("time");
      time.textContent = line.at;
      li.appendChild(time);
      li.appendChild(document.createTextNode(" "));
      if (line.step_id) {
        const b = document.createElement("b");
        b.textContent = line.step_id;
        li.appendChild(b);
        li.appendChild(document.createTextNode(" "));
      }
      const msg = document.createElement("span");
      msg.textContent = line.message;
      li.appendChild(msg);
      log.appendChild(li);
      while (log.children.length > 2000) log.removeChild(log.firstChild);
      if (nearBottom) log.scrollTop = log.scrollHeight;
    }

    if (page.dataset.live && !["SUCCEEDED", "FAILED", "CANCELLED"].includes(page.dataset.status)) {
      const source = new EventSource(page.dataset.live);
      // Running attempts grow on the timeline even when no step changes state.
      const ticker = setInterval(() => refreshPanels(false), 3000);
      source.addEventListener("state", (ev) => {
        const state = JSON.parse(ev.data);
        const items = state.items || {};
        Object.entries(state.steps).forEach(([step, st]) => setNodeState(document, step, st, items[step]));
        setRunStatus(state.run);
        refreshPanels();
      });
      source.addEventListener("log", (ev) => appendLog(JSON.parse(ev.data)));
      source.addEventListener("end", (ev) => {
        const end = JSON.parse(ev.data);
        source.close();
        clearInterval(ticker);
        setRunStatus(end.run);
        refreshPanels();
        const state = document.getElementById("log-state");
        if (state) state.textContent = "";
        notifyEnd(runId, flowId, end.run);
      });
    }

    // the step drawer
    async function loadDrawer(stepId, focus) {
      const res = await fetch("/runs/" + encodeURIComponent(runId) + "/steps/" + encodeURIComponent(stepId),
        { credentials: "same-origin" });
      if (!res.ok) return;
      drawer.innerHTML = await res.text();
      drawer.hidden = false;
      openStep = stepId;
      if (focus) {
        const close = drawer.querySelector("[data-close]");
        if (close) close.focus();
      }
    }

    function closeDrawer() {
      drawer.hidden = true;
      openStep = null;
      const url = new URL(location.href);
      url.searchParams.delete("step");
      history.replaceState(null, "", url);
      if (opener && document.contains(opener)) opener.focus();
      opener = null;
    }

    document.addEventListener("click", (ev) => {
      const close = ev.target.closest("[data-close]");
      if (close && drawer.contains(close)) { ev.preventDefault(); closeDrawer(); return; }
      const link = ev.target.closest("a[data-step]");
      if (!link || ev.metaKey || ev.ctrlKey || ev.shiftKey) return;
      ev.preventDefault();
      opener = link;
      const url = new URL(location.href);
      url.searchParams.set("step", link.dataset.step);
      history.replaceState(null, "", url);
      loadDrawer(link.dataset.step, true);
    });

    document.addEventListener("keydown", (ev) => {
      if (ev.key === "Escape" && !drawer.hidden) { ev.preventDefault(); closeDrawer(); }
    });
    if (!drawer.hidden) {
      const close = drawer.querySelector("[data-close]");
      if (close) close.focus();
    }

    // desktop notification when this run ends
    const watch = document.getElementById("watch");
    if (watch) {
      if (watched().includes(runId)) watch.setAttribute("aria-pressed", "true");
      watch.addEventListener("click", async () => {
        const on = watch.getAttribute("aria-pressed") !== "true";
        if (on && "Notification" in window && Notification.permission === "default") {
          await Notification.requestPermission();
        }
        const ids = watched().filter((x) => x !== runId);
        if (on) ids.push(runId);
        setWatched(ids);
        watch.setAttribute("aria-pressed", on ? "true" : "false");
        watch.textContent = on ? "Watching: you will be notified" : "Notify me when it ends";
      });
    }
  }

  // ---- the dashboard: instant filter, and notifications for watched runs ---------------
  function dashboard() {
    const input = document.querySelector("input[data-filter]");
    if (input) {
      const count = document.getElementById("flow-count");
      input.addEventListener("input", () => {
        const rows = document.querySelectorAll(input.dataset.filter);
        const q = input.value.trim().toLowerCase();
        let shown = 0;
        rows.forEach((row) => {
          const hit = !row.dataset.text || row.dataset.text.toLowerCase().includes(q);
          row.hidden = !hit;
          if (hit) shown += 1;
        });
        if (count) count.textContent = shown + " shown";
      });
    }
    const active = document.querySelector("[data-live-runs]");
    if (active) {
      // Runs change status: refresh the flow table and "running now", notify watched runs.
      let timer = null;
      const refresh = () => {
        clearTimeout(timer);
        timer = setTimeout(async () => {
          const res = await fetch(location.href, { credentials: "same-origin" });
          if (!res.ok) return;
          const doc = new DOMParser().parseFromString(await res.text(), "text/html");
          const fresh = doc.querySelector("[data-live-runs]");
          const rows = doc.querySelector("#flows tbody");
          if (fresh) active.innerHTML = fresh.innerHTML;
          if (rows) document.querySelector("#flows tbody").innerHTML = rows.innerHTML;
          if (input && input.value) input.dispatchEvent(new Event("input"));
        }, 300);
      };
      const source = new EventSource("/live");
      source.addEventListener("run", (ev) => {
        const change = JSON.parse(ev.data);
        if (["SUCCEEDED", "FAILED", "CANCELLED"].includes(change.status)) {
          notifyEnd(change.run_id, change.flow_id, change.status);
        }
        refresh();
      });
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    const page = document.querySelector(".run-page");
    if (page) runPage(page);
    dashboard();
  });
})();

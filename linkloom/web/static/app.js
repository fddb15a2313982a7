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

// ---- the installable app: service worker, offline reading, notifications --------------------
(function () {
  const html = document.documentElement;
  const loadedAt = new Date();
  const offlineCopy = html.dataset.offlineAs; // set by the service worker on a cached copy
  const NOTE_KEY = "loom.lastNote";

  function hhmm(date) {
    return date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", hour12: false });
  }

  // Actions need the server: offline they are disabled (never queued for later).
  function setActions(enabled) {
    document.querySelectorAll('form[method="post" i] button, form[method="post" i] input[type="submit"], [data-needs-network]')
      .forEach((el) => {
        if (!enabled) {
          if (el.dataset.offline === undefined) el.dataset.offline = el.disabled ? "was" : "now";
          el.disabled = true;
        } else if (el.dataset.offline === "now") {
          el.disabled = false;
          delete el.dataset.offline;
        }
      });
    html.classList.toggle("is-offline", !enabled);
  }

  function showOffline(asOf) {
    const banner = document.getElementById("offline-banner");
    if (!banner) return;
    const when = asOf && !isNaN(asOf.getTime()) ? hhmm(asOf) : null;
    banner.textContent = when
      ? "Offline, as of " + when + ": this is the last copy of this page. Actions are disabled until the connection is back."
      : "Offline: this page was never opened while online. Actions are disabled until the connection is back.";
    banner.hidden = false;
    html.dataset.offline = "true";
    setActions(false);
  }

  function showOnline() {
    const banner = document.getElementById("offline-banner");
    if (offlineCopy) {
      // the page is an old copy: say so and offer the current one, keep actions off until then
      if (banner) {
        banner.textContent = "Back online. ";
        const link = document.createElement("a");
        link.href = location.href;
        link.textContent = "Reload for the current page";
        banner.appendChild(link);
      }
      return;
    }
    if (banner) banner.hidden = true;
    delete html.dataset.offline;
    setActions(true);
  }

  document.addEventListener("submit", (ev) => {
    if (html.dataset.offline === "true") {
      ev.preventDefault();
      ev.stopPropagation();
    }
  }, true);

  window.addEventListener("offline", () => showOffline(offlineCopy ? new Date(offlineCopy) : loadedAt));
  window.addEventListener("online", showOnline);

  // Signing out forgets the copies of pages kept for offline reading.
  document.addEventListener("submit", (ev) => {
    if (ev.target && ev.target.getAttribute && ev.target.getAttribute("action") === "/logout" && "caches" in window) {
      caches.delete("loom-pages");
    }
  });

  async function showNote(note) {
    html.dataset.lastNote = note.tag;
    if (!("Notification" in window) || Notification.permission !== "granted") return;
    const registration = await navigator.serviceWorker.ready;
    await registration.showNotification(note.title, {
      body: note.body,
      tag: note.tag,
      data: { url: note.url },
      icon: "/static/icons/icon-192.png",
    });
  }

  function listen() {
    const after = localStorage.getItem(NOTE_KEY);
    const source = new EventSource("/me/notifications/live" + (after ? "?after=" + encodeURIComponent(after) : ""));
    source.addEventListener("ready", (ev) => {
      html.dataset.notesReady = "true";
      if (!after) localStorage.setItem(NOTE_KEY, String(JSON.parse(ev.data).after));
    });
    source.addEventListener("note", (ev) => {
      localStorage.setItem(NOTE_KEY, ev.lastEventId);
      showNote(JSON.parse(ev.data));
    });
  }

  function b64ToBytes(text) {
    const padded = (text + "===".slice((text.length + 3) % 4)).replace(/-/g, "+").replace(/_/g, "/");
    return Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
  }

  function preferencesPage(card) {
    const state = document.getElementById("permission-state");
    const result = document.getElementById("push-result");
    const csrf = card.dataset.csrf;
    const say = () => {
      if (!("Notification" in window)) { state.textContent = "This browser cannot show notifications."; return; }
      state.textContent = {
        granted: "Desktop notifications are allowed in this browser.",
        denied: "This browser blocks notifications from Link Loom: allow them in its site settings.",
        default: "Desktop notifications are not allowed yet in this browser.",
      }[Notification.permission];
    };
    say();
    document.getElementById("allow-notifications").addEventListener("click", async () => {
      if ("Notification" in window) await Notification.requestPermission();
      say();
    });
    document.getElementById("subscribe-push").addEventListener("click", async () => {
      try {
        if (Notification.permission !== "granted") await Notification.requestPermission();
        say();
        const key = await (await fetch("/me/push/key", { credentials: "same-origin" })).json();
        const registration = await navigator.serviceWorker.ready;
        const subscription = await registration.pushManager.subscribe({
          userVisibleOnly: true,
          applicationServerKey: b64ToBytes(key.publicKey),
        });
        const response = await fetch("/me/push/subscribe", {
          method: "POST",
          credentials: "same-origin",
          headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
          body: JSON.stringify(subscription.toJSON()),
        });
        const body = await response.json();
        result.textContent = response.ok ? "This device gets Web Push notifications now." : body.error;
      } catch (err) {
        result.textContent = "This browser could not subscribe to Web Push: " + err.message;
      }
    });
    card.querySelectorAll("[data-unsubscribe]").forEach((button) => {
      button.addEventListener("click", async () => {
        const response = await fetch("/me/push/unsubscribe", {
          method: "POST",
          credentials: "same-origin",
          headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
          body: JSON.stringify({ endpoint: button.dataset.unsubscribe }),
        });
        if (response.ok) button.closest("li").remove();
      });
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    if (offlineCopy) showOffline(new Date(offlineCopy));
    else if (!navigator.onLine) showOffline(loadedAt);
    if (!document.body.dataset.app || !("serviceWorker" in navigator)) return;
    const hadController = Boolean(navigator.serviceWorker.controller);
    navigator.serviceWorker.addEventListener("controllerchange", () => {
      // a new server version took over: load its shell once (never on the first install)
      if (hadController && !html.dataset.reloading) {
        html.dataset.reloading = "true";
        location.reload();
      }
    });
    navigator.serviceWorker.register("/sw.js", { scope: "/" }).then(() => {
      html.dataset.serviceWorker = "registered";
    }).catch((err) => {
      html.dataset.serviceWorker = "failed: " + err.message;
    });
    if (document.body.dataset.notes && !offlineCopy && navigator.onLine && "EventSource" in window) listen();
    const card = document.getElementById("push-card");
    if (card) preferencesPage(card);
  });
})();

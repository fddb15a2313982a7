// Link Loom's service worker: the installable app's shell, its offline copy of the pages last
// seen, and its notifications. The server fills in VERSION and SHELL_FILES (routes/app_shell.py):
// a new server version is a new worker, whose activation deletes the old shell cache and
// takes over open pages (they reload once), so the app never runs a stale shell.
"use strict";

const VERSION = "__LOOM_VERSION__";
const SHELL_FILES = __LOOM_SHELL_FILES__;
const SHELL = "loom-shell-" + VERSION;
const PAGES = "loom-pages"; // the last copy of each page seen online, with when it was seen
const NETWORK_ONLY = [/^\/api\//, /\/live$/, /^\/login/, /^\/logout/, /^\/editor\//, /^\/me\/push\//];

self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(SHELL).then((cache) => cache.addAll(SHELL_FILES)).then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    caches
      .keys()
      .then((keys) => Promise.all(keys.filter((k) => k.startsWith("loom-shell-") && k !== SHELL).map((k) => caches.delete(k))))
      .then(() => self.clients.claim()),
  );
});

function isHtml(response) {
  return (response.headers.get("content-type") || "").includes("text/html");
}

async function remember(request, response) {
  // Only complete pages of a signed-in user: never a redirect (to the sign-in page) or an error.
  if (!response.ok || response.redirected || !isHtml(response)) return;
  const headers = new Headers(response.headers);
  headers.set("x-loom-seen-at", new Date().toISOString());
  const body = await response.clone().text();
  const cache = await caches.open(PAGES);
  await cache.put(request.url, new Response(body, { status: 200, headers }));
}

async function offlineCopy(request) {
  const cache = await caches.open(PAGES);
  const hit = await cache.match(request.url);
  if (!hit) {
    const page =
      '<!doctype html><html lang="en" data-offline-as="never"><head><meta charset="utf-8">' +
      '<meta name="viewport" content="width=device-width, initial-scale=1"><title>Offline · Link Loom</title>' +
      '<link rel="stylesheet" href="' + SHELL_FILES[0] + '"><script src="' + SHELL_FILES[1] + '" defer></script></head>' +
      '<body><header class="top"><a class="brand" href="/">Link Loom</a></header><main id="main">' +
      "<h1>Offline</h1><p>This page was not opened while the connection was up, so there is no copy of it. " +
      'Pages you have seen are still readable: <a href="/">the dashboard</a>, <a href="/runs">runs</a>, ' +
      '<a href="/proposals">proposals</a>.</p></main></body></html>';
    return new Response(page, { status: 503, headers: { "content-type": "text/html; charset=utf-8" } });
  }
  const seen = hit.headers.get("x-loom-seen-at") || "";
  const text = (await hit.text()).replace("<html lang=\"en\"", '<html lang="en" data-offline-as="' + seen + '"');
  const headers = new Headers(hit.headers);
  headers.delete("content-length");
  return new Response(text, { status: 200, headers });
}

self.addEventListener("fetch", (event) => {
  const request = event.request;
  if (request.method !== "GET") return; // writes go to the network or fail: never queued
  const url = new URL(request.url);
  if (url.origin !== self.location.origin) return;
  if (NETWORK_ONLY.some((re) => re.test(url.pathname))) return;
  if (url.pathname.startsWith("/static/")) {
    event.respondWith(
      caches.match(request).then(
        (hit) =>
          hit ||
          fetch(request).then((response) => {
            if (response.ok && url.searchParams.get("v")) {
              const copy = response.clone();
              caches.open(SHELL).then((cache) => cache.put(request, copy));
            }
            return response;
          }),
      ),
    );
    return;
  }
  if (request.mode === "navigate" || (request.headers.get("accept") || "").includes("text/html")) {
    event.respondWith(
      fetch(request)
        .then((response) => {
          event.waitUntil(remember(request, response.clone()));
          return response;
        })
        .catch(() => offlineCopy(request)),
    );
  }
});

self.addEventListener("message", (event) => {
  if (event.data && event.data.type === "forget-pages") event.waitUntil(caches.delete(PAGES));
});

self.addEventListener("push", (event) => {
  let note = {};
  try {
    note = event.data ? event.data.json() : {};
  } catch (err) {
    note = { title: "Link Loom", body: event.data ? event.data.text() : "" };
  }
  event.waitUntil(
    self.registration.showNotification(note.title || "Link Loom", {
      body: note.body || "",
      tag: note.tag || undefined,
      data: { url: note.url || "/" },
      icon: SHELL_FILES.find((f) => f.includes("icon-192")),
    }),
  );
});

self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  const target = new URL((event.notification.data && event.notification.data.url) || "/", self.location.origin).href;
  event.waitUntil(
    self.clients.matchAll({ type: "window", includeUncontrolled: true }).then((windows) => {
      for (const win of windows) {
        if ("focus" in win) return win.focus().then((w) => (w && "navigate" in w ? w.navigate(target) : w));
      }
      return self.clients.openWindow(target);
    }),
  );
});

// galileo-otel local UI: keep the page's data fresh without a reload.
// Polls /ui/poll (a version that changes when sessions, traces or spans arrive); on a change it
// fetches this same URL and swaps in the new <main>. Scroll position and the URL stay as they are.
(function () {
  "use strict";
  // The trace page's tree: expand or collapse every step at once (delegated, so it survives
  // the live refresh replacing <main>).
  document.addEventListener("click", function (event) {
    var id = event.target && event.target.id;
    if (id !== "expand-all" && id !== "collapse-all") { return; }
    var open = id === "expand-all";
    document.querySelectorAll("#steps details").forEach(function (d) { d.open = open; });
  });

  var body = document.body;
  var pollUrl = body.dataset.pollUrl;
  if (!pollUrl) { return; }
  var version = body.dataset.version;
  var every = parseInt(body.dataset.pollMs, 10) || 2000;
  var toggle = document.getElementById("live-toggle");
  var status = document.getElementById("live-status");
  var busy = false;
  var shown = (document.getElementById("live") || {}).innerHTML;
  var KEY = "galileo-otel-ui-live";

  if (toggle) {
    toggle.checked = window.localStorage.getItem(KEY) !== "off";
    toggle.addEventListener("change", function () {
      window.localStorage.setItem(KEY, toggle.checked ? "on" : "off");
      say(toggle.checked ? "" : "paused");
    });
  }

  function say(text) { if (status) { status.textContent = text; } }

  function refresh() {
    return fetch(window.location.href, { credentials: "same-origin", cache: "no-store" })
      .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        var fresh = doc.getElementById("live");
        var main = document.getElementById("live");
        // Swap only when this page's own data changed (the version counts the whole server's),
        // so folded steps and selections survive traffic that goes elsewhere.
        if (fresh && main && fresh.innerHTML !== shown) {
          shown = fresh.innerHTML;
          main.replaceChildren.apply(main, Array.from(fresh.childNodes));
        }
        var v = doc.body && doc.body.dataset.version;
        if (v) { version = v; body.dataset.version = v; }
        say("updated " + new Date().toLocaleTimeString());
      });
  }

  function tick() {
    if (busy || (toggle && !toggle.checked) || document.hidden) { return; }
    busy = true;
    fetch(pollUrl, { credentials: "same-origin", cache: "no-store" })
      .then(function (r) { return r.ok ? r.json() : Promise.reject(r.status); })
      .then(function (data) { return data.version !== version ? refresh() : null; })
      .catch(function () { say("server unreachable"); })
      .then(function () { busy = false; });
  }

  say(toggle && !toggle.checked ? "paused" : "");
  window.setInterval(tick, every);
})();

// Cattery Manager UI: small progressive enhancements. No inline script anywhere (the
// Content-Security-Policy forbids it); everything hooks onto data-* attributes.
(function () {
  "use strict";

  function announce(msg) {
    var s = document.getElementById("live-status");
    if (s) s.textContent = msg;
  }

  // Server unreachable. Every request a page makes for data (fetch, htmx, the live
  // streams) that gets no answer is retried a bounded number of times with backoff; after
  // the last one the page says so once, every live part stops, and nothing retries again
  // until a reload. 502/503/504 (the server answered that the API failed) count as no
  // answer for fetch.
  var RETRY_DELAYS = [500, 1000, 2000];
  var UNREACHABLE = "Server unreachable \u2014 retrying stopped, reload to try again.";
  var stopped = false, stoppers = [];
  function unreachable() {
    if (stopped) return;
    stopped = true;
    stoppers.forEach(function (f) { try { f(); } catch (e) { /* already closed */ } });
    var main = document.getElementById("main") || document.body;
    var box = document.createElement("div");
    box.id = "unreachable";
    box.className = "notice error";
    box.setAttribute("role", "alert");
    main.insertBefore(box, main.firstChild);
    box.textContent = UNREACHABLE;
    document.documentElement.dataset.unreachable = "true";
  }
  function retrying(attempt, why) {
    announce("The server did not answer; retrying (" + attempt + "/" + RETRY_DELAYS.length + ")\u2026");
    document.dispatchEvent(new CustomEvent("cattery:retrying", { detail: { attempt: attempt, of: RETRY_DELAYS.length, why: String(why) } }));
  }
  // `fetch` with the retries: resolves with the first answer (after the last retry, also a
  // 502–504), rejects once the server is declared unreachable.
  function fetchRetrying(url, opts) {
    var attempt = 0;
    return new Promise(function (resolve, reject) {
      function go() {
        if (stopped) { reject(new Error("the server is unreachable")); return; }
        fetch(url, opts).then(function (r) {
          if ((r.status === 502 || r.status === 503 || r.status === 504) && attempt < RETRY_DELAYS.length) again("HTTP " + r.status);
          else resolve(r);
        }, function (e) {
          if (attempt < RETRY_DELAYS.length) again(e);
          else { unreachable(); reject(e); }
        });
      }
      function again(why) { var d = RETRY_DELAYS[attempt++]; retrying(attempt, why); setTimeout(go, d); }
      go();
    });
  }
  // An EventSource reconnects by itself; count the failed reconnects (reset when one
  // opens) and give up after as many as fetch retries. CLOSED means the server answered
  // and refused (e.g. the session ended): that is not "unreachable".
  function watchSource(es, onClosed) {
    var errors = 0;
    stoppers.push(function () { es.close(); });
    es.addEventListener("open", function () { errors = 0; });
    es.addEventListener("error", function () {
      if (es.readyState === EventSource.CLOSED) { onClosed(); return; }
      errors++;
      if (errors > RETRY_DELAYS.length) { es.close(); unreachable(); }
      else retrying(errors, "the live stream was cut");
    });
  }
  // htmx: a request that got no answer is sent again from the same element (its target,
  // select, include and push-url apply as before).
  var htmxTries = new WeakMap();
  document.addEventListener("htmx:sendError", function (e) {
    var d = e.detail, elt = d.elt, cfg = d.requestConfig;
    if (!elt || !cfg || !window.htmx) return;
    var n = htmxTries.get(elt) || 0;
    if (stopped) return;
    if (n >= RETRY_DELAYS.length) { htmxTries.delete(elt); unreachable(); return; }
    htmxTries.set(elt, n + 1);
    retrying(n + 1, "no answer");
    setTimeout(function () {
      if (!stopped) window.htmx.ajax(cfg.verb, cfg.path, { source: elt, target: d.target });
    }, RETRY_DELAYS[n]);
  });
  document.addEventListener("htmx:afterRequest", function (e) {
    if (e.detail && e.detail.successful && e.detail.elt) htmxTries.delete(e.detail.elt);
  });
  document.addEventListener("htmx:beforeRequest", function (e) { if (stopped) e.preventDefault(); });
  window.cattery = { fetch: fetchRetrying, unreachable: unreachable };

  // Times: the markup carries UTC; show local time, keep UTC on hover.
  function localTimes(root) {
    (root || document).querySelectorAll("time[datetime]").forEach(function (t) {
      if (t.dataset.local) return;
      var d = new Date(t.getAttribute("datetime"));
      if (isNaN(d)) return;
      t.textContent = d.toLocaleString(undefined, { year: "numeric", month: "short", day: "2-digit",
        hour: "2-digit", minute: "2-digit", second: "2-digit" });
      t.title = "UTC: " + t.getAttribute("datetime");
      t.dataset.local = "1";
    });
  }

  // Selects that apply at once (cluster, time range).
  document.addEventListener("change", function (e) {
    var el = e.target;
    if (el.matches && el.matches("select[data-autosubmit]") && el.form) el.form.requestSubmit();
  });

  // Type-to-filter for the cluster selector. A selector that lists only the first
  // clusters (data-search) asks the server for the matching ones instead.
  var searchTimer = null, searchSeq = 0;
  function searchClusters(el, sel) {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(function () {
      var seq = ++searchSeq;
      var url = sel.dataset.search + "?q=" + encodeURIComponent(el.value.trim()) +
        "&current=" + encodeURIComponent(sel.dataset.current || "");
      fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" } })
        .then(function (r) { if (!r.ok) throw new Error("HTTP " + r.status); return r.text(); })
        .then(function (html) {
          if (seq !== searchSeq) return; // an older answer arriving late
          sel.innerHTML = html;
          var n = Array.prototype.filter.call(sel.options, function (o) { return !o.disabled; }).length;
          announce(n + " options match");
          sel.dispatchEvent(new Event("cattery:options"));
        })
        .catch(function () { announce("Could not search clusters: server unreachable"); });
    }, 200);
  }
  document.addEventListener("input", function (e) {
    var el = e.target;
    if (!el.dataset || !el.dataset.filters) return;
    var sel = document.getElementById(el.dataset.filters);
    if (!sel) return;
    if (sel.dataset.search) { searchClusters(el, sel); return; }
    var q = el.value.trim().toLowerCase(), shown = 0, first = null;
    Array.prototype.forEach.call(sel.options, function (o) {
      var hit = !q || o.textContent.toLowerCase().indexOf(q) >= 0;
      o.hidden = !hit && !o.selected;
      if (hit) { shown++; if (!first) first = o; }
    });
    announce(shown + " clusters match");
  });
  document.addEventListener("keydown", function (e) {
    var el = e.target;
    if (e.key !== "Enter" || !el.dataset || !el.dataset.filters) return;
    var sel = document.getElementById(el.dataset.filters);
    if (!sel) return;
    var q = el.value.trim().toLowerCase();
    var hit = Array.prototype.find.call(sel.options, function (o) { return q && o.textContent.toLowerCase().indexOf(q) >= 0; });
    if (hit) { e.preventDefault(); sel.value = hit.value; sel.form.requestSubmit(); }
  });

  document.addEventListener("click", function (e) {
    var b = e.target.closest ? e.target.closest("button") : null;
    if (!b) return;
    // Row details.
    if (b.hasAttribute("data-toggle-row")) {
      var row = document.getElementById(b.getAttribute("aria-controls"));
      if (!row) return;
      var open = b.getAttribute("aria-expanded") === "true";
      row.hidden = open;
      b.setAttribute("aria-expanded", open ? "false" : "true");
      b.textContent = open ? "Details" : "Hide";
    }
    // Copy / download a <pre>.
    if (b.dataset.copy) {
      var text = document.getElementById(b.dataset.copy).textContent;
      navigator.clipboard.writeText(text).then(function () {
        b.textContent = "Copied"; announce("Copied to the clipboard");
        setTimeout(function () { b.textContent = "Copy"; }, 2000);
      }, function () { announce("Copying failed: select the text and copy it"); });
    }
    if (b.dataset.download) {
      var blob = new Blob([document.getElementById(b.dataset.download).textContent], { type: "application/yaml" });
      var a = document.createElement("a");
      a.href = URL.createObjectURL(blob);
      a.download = b.dataset.filename || "manifest.yaml";
      document.body.appendChild(a); a.click(); a.remove();
      setTimeout(function () { URL.revokeObjectURL(a.href); }, 1000);
    }
    // Live tail toggle.
    if (b.dataset.liveUrl) toggleLive(b);
  });

  // Live cluster rows: server-sent `cluster` events update the row in place.
  var clusterSource = null;
  function liveClusters() {
    var t = document.querySelector("[data-live]");
    if (clusterSource) { clusterSource.close(); clusterSource = null; }
    if (!t || !window.EventSource || stopped) return;
    clusterSource = new EventSource(t.dataset.live);
    clusterSource.addEventListener("cluster", function (ev) {
      var c = JSON.parse(ev.data);
      var row = document.querySelector('tr[data-cluster="' + CSS.escape(c.name) + '"]');
      if (!row) return;
      var st = row.querySelector('[data-field="status"]');
      if (st) {
        var was = st.textContent;
        st.textContent = c.status;
        st.className = "badge " + (c.connected ? "ok" : "bad");
        if (was && was !== c.status) { announce(c.name + " is now " + c.status.toLowerCase()); row.classList.add("fresh"); }
      }
      var reason = row.querySelector('[data-field="reason"]');
      if (reason) { reason.textContent = c.reason; reason.title = c.message; }
      ["remote", "agent", "kubernetes"].forEach(function (f) {
        var cell = row.querySelector('[data-field="' + f + '"]');
        if (cell) cell.textContent = c[f] || "–";
      });
      ["since", "last_logs"].forEach(function (f) {
        var cell = row.querySelector('[data-field="' + f + '"]');
        if (!cell) return;
        cell.textContent = "";
        if (c[f]) {
          var tm = document.createElement("time");
          tm.setAttribute("datetime", c[f]);
          tm.textContent = c[f];
          cell.appendChild(tm);
          localTimes(cell);
        } else cell.textContent = "–";
      });
      row.dataset.connected = c.connected ? "true" : "false";
    });
    watchSource(clusterSource, function () { announce("Live updates stopped; reload to resume"); });
  }

  // Live log rows.
  var tail = null;
  function toggleLive(b) {
    if (tail) {
      tail.close(); tail = null;
      document.querySelectorAll("button[data-live-url]").forEach(function (x) { x.setAttribute("aria-pressed", "false"); x.textContent = "Live"; });
      announce("Live view stopped");
      return;
    }
    var body = document.getElementById(b.dataset.liveTarget);
    if (!body || stopped) return;
    tail = new EventSource(b.dataset.liveUrl);
    b.setAttribute("aria-pressed", "true");
    b.textContent = "Live: on";
    announce("Live view started");
    tail.addEventListener("row", function (ev) {
      var table = body.closest("table");
      if (table && table.hidden) {
        table.hidden = false;
        var empty = table.previousElementSibling;
        if (empty && empty.classList.contains("empty")) empty.remove();
      }
      body.insertAdjacentHTML("afterbegin", ev.data);
      var fresh = body.firstElementChild;
      if (fresh) { fresh.classList.add("fresh"); localTimes(fresh); }
      while (body.children.length > 1000) body.lastElementChild.remove();
    });
    tail.addEventListener("lagged", function () { announce("The live view fell behind and skipped records"); });
    watchSource(tail, function () { announce("Live view stopped; reload to resume"); });
  }

  function init(root) { localTimes(root); }
  document.addEventListener("DOMContentLoaded", function () { init(document); liveClusters(); });
  document.addEventListener("htmx:afterSwap", function (e) { init(e.target); liveClusters(); });
})();

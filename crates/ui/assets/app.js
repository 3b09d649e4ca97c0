// Cattery Manager UI: small progressive enhancements. No inline script anywhere (the
// Content-Security-Policy forbids it); everything hooks onto data-* attributes.
(function () {
  "use strict";

  function announce(msg) {
    var s = document.getElementById("live-status");
    if (s) s.textContent = msg;
  }

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
    if (!t || !window.EventSource) return;
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
    clusterSource.onerror = function () { announce("Live updates interrupted; retrying…"); };
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
    if (!body) return;
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
    tail.onerror = function () { announce("Live view interrupted; retrying…"); };
  }

  function init(root) { localTimes(root); }
  document.addEventListener("DOMContentLoaded", function () { init(document); liveClusters(); });
  document.addEventListener("htmx:afterSwap", function (e) { init(e.target); liveClusters(); });
})();

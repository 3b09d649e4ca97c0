// Service graph: fetches /ui/graph/data (JSON built from the log store's aggregations),
// draws it with the vendored cytoscape + dagre, and narrows the tables below to the
// clicked node or edge (/ui/graph/tables, server-rendered HTML). No inline script: the
// page only carries data-* attributes. Layout is deterministic: the server sorts nodes
// and edges, and dagre lays out sorted input the same way every time.
(function () {
  "use strict";
  var box = document.getElementById("graph");
  if (!box || !window.cytoscape) return;
  if (window.cytoscapeDagre) { try { cytoscape.use(window.cytoscapeDagre); } catch (e) { /* registered */ } }

  var RED = "#d0312d", GREY = "#8a94a6";
  var state = {
    weight: box.dataset.weight || "bytes",
    expand: (box.dataset.expand || "").split(",").filter(Boolean),
    focus: null,
  };
  var summary = document.getElementById("graph-summary");
  var panel = document.getElementById("graph-panel");
  var cy = cytoscape({
    container: box,
    wheelSensitivity: 0.3,
    maxZoom: 1.6,
    minZoom: 0.1,
    boxSelectionEnabled: false,
    style: [
      { selector: "node", style: {
        "label": "data(label)", "font-size": 11, "text-valign": "bottom", "text-margin-y": 4,
        "background-color": "#3b6fd8", "width": "data(size)", "height": "data(size)",
        "color": "#555", "text-wrap": "ellipsis", "text-max-width": 160 } },
      { selector: "node[kind = 'workload']", style: { "background-color": "#2f9e8f", "shape": "round-rectangle" } },
      { selector: "node[kind = 'other']", style: { "background-color": "#999", "shape": "diamond" } },
      { selector: "node[?hasDenied]", style: { "border-width": 3, "border-color": RED } },
      { selector: ":parent", style: {
        "background-opacity": 0.06, "background-color": "#3b6fd8", "border-width": 1, "border-color": "#9ab",
        "text-valign": "top", "text-halign": "center", "font-weight": "bold", "padding": 14, "shape": "round-rectangle" } },
      { selector: "node[kind = 'cluster']", style: { "background-color": "#777", "border-style": "dashed", "font-size": 13 } },
      { selector: "edge", style: {
        "width": "data(width)", "line-color": GREY, "target-arrow-color": GREY, "target-arrow-shape": "triangle",
        "curve-style": "bezier", "arrow-scale": 0.9, "opacity": 0.85 } },
      { selector: "edge[action = 'deny']", style: { "line-color": RED, "target-arrow-color": RED, "line-style": "dashed" } },
      { selector: ":selected", style: { "overlay-color": "#f5b700", "overlay-opacity": 0.25, "overlay-padding": 6 } },
    ],
  });
  window.catteryGraph = cy; // the browser test inspects it

  function fmtCount(n) { return Number(n || 0).toLocaleString(); }
  function fmtBytes(n) {
    var u = ["B", "kB", "MB", "GB", "TB"], i = 0; n = Number(n || 0);
    while (n >= 1000 && i < u.length - 1) { n /= 1000; i++; }
    return (i ? n.toFixed(1) : n.toFixed(0)) + " " + u[i];
  }
  function query(extra) {
    var p = new URLSearchParams();
    p.set("weight", state.weight);
    if (state.expand.length) p.set("expand", state.expand.join(","));
    Object.keys(extra || {}).forEach(function (k) { if (extra[k] != null && extra[k] !== "") p.set(k, extra[k]); });
    return p.toString();
  }
  // The URL keeps weight and expanded namespaces: a reload or shared link shows the same.
  function keepInUrl() {
    var u = new URL(window.location.href);
    u.searchParams.set("weight", state.weight);
    if (state.expand.length) u.searchParams.set("expand", state.expand.join(","));
    else u.searchParams.delete("expand");
    history.replaceState(null, "", u.toString());
  }

  function weightOf(t) { return state.weight === "flows" ? t.flows : t.bytes; }
  function elements(data) {
    var max = 1;
    data.edges.forEach(function (e) { max = Math.max(max, weightOf(e.totals)); });
    var nmax = 1;
    data.nodes.forEach(function (n) { nmax = Math.max(nmax, state.weight === "flows" ? n.totals.flows : n.totals.bytes); });
    var els = [];
    data.nodes.forEach(function (n) {
      var w = state.weight === "flows" ? n.totals.flows : n.totals.bytes;
      els.push({ group: "nodes", data: {
        id: n.id, label: n.label, parent: n.parent || undefined, kind: n.kind, cluster: n.cluster,
        namespaces: n.namespaces, workload: n.workload, expanded: n.expanded, totals: n.totals,
        hasDenied: n.totals.denied > 0 && n.kind !== "cluster" && !n.expanded,
        size: 18 + Math.round(22 * Math.sqrt(w / nmax)) } });
    });
    data.edges.forEach(function (e) {
      els.push({ group: "edges", data: {
        id: e.id, source: e.source, target: e.target, action: e.action, totals: e.totals,
        width: 1.5 + Math.round(8 * Math.sqrt(weightOf(e.totals) / max) * 10) / 10 } });
    });
    return els;
  }

  var last = null, signature = "";
  function draw(data) {
    last = data;
    var sig = data.nodes.map(function (n) { return n.id; }).join("|") + "#" +
      data.edges.map(function (e) { return e.id; }).join("|");
    var els = elements(data);
    if (sig === signature) {
      // Same shape: update counts and widths in place, keep positions.
      els.forEach(function (el) { var x = cy.getElementById(el.data.id); if (x.nonempty()) x.data(el.data); });
    } else {
      signature = sig;
      cy.elements().remove();
      cy.add(els);
      cy.layout({ name: window.cytoscapeDagre ? "dagre" : "breadthfirst", rankDir: "LR", nodeSep: 30,
        rankSep: 90, edgeSep: 12, animate: false, fit: true, padding: 30 }).run();
    }
    var denied = data.edges.filter(function (e) { return e.action === "deny"; }).length;
    summary.textContent = fmtCount(data.records) + " flow records in " + data.scope + " · " +
      data.nodes.filter(function (n) { return n.kind !== "cluster"; }).length + " nodes, " +
      data.edges.length + " edges (" + denied + " denied)" +
      (data.notes.length ? " · " + data.notes.join("; ") : "");
    if (!data.edges.length && !data.nodes.length) summary.textContent = "No flows in " + data.scope + " for this range and these filters.";
    edgeTable(data);
    box.dataset.state = "ready";
    box.dataset.signature = sig;
  }

  function labelOf(id) {
    var n = last && last.nodes.find(function (x) { return x.id === id; });
    if (!n) return id;
    var ns = n.kind === "workload" ? n.namespaces[0] + "/" : "";
    return (last.all ? n.cluster + ": " : "") + ns + n.label;
  }
  function edgeTable(data) {
    var tb = document.getElementById("graph-edges");
    if (!tb) return;
    tb.textContent = "";
    data.edges.forEach(function (e) {
      var tr = document.createElement("tr");
      [labelOf(e.source), labelOf(e.target)].forEach(function (t) { var td = document.createElement("td"); td.textContent = t; tr.appendChild(td); });
      var a = document.createElement("td"); var b = document.createElement("span");
      b.className = "badge " + (e.action === "deny" ? "bad" : "ok"); b.textContent = e.action; a.appendChild(b); tr.appendChild(a);
      [fmtCount(e.totals.flows), fmtBytes(e.totals.bytes), fmtCount(e.totals.records)].forEach(function (t) {
        var td = document.createElement("td"); td.textContent = t; tr.appendChild(td);
      });
      var td = document.createElement("td"); var btn = document.createElement("button");
      btn.type = "button"; btn.className = "small ghost"; btn.textContent = "Select";
      btn.setAttribute("aria-label", "Select edge " + labelOf(e.source) + " to " + labelOf(e.target) + " (" + e.action + ")");
      btn.addEventListener("click", function () { var x = cy.getElementById(e.id); cy.elements().unselect(); x.select(); focusOn(x); });
      td.appendChild(btn); tr.appendChild(td);
      tb.appendChild(tr);
    });
  }

  var tableSeq = 0;
  // app.js's shared retries: the summary says which retry it is; after the last one
  // app.js shows the "server unreachable" state and this fetch rejects.
  document.addEventListener("cattery:retrying", function (e) {
    summary.textContent = "The server did not answer; retrying (" + e.detail.attempt + "/" + e.detail.of + ")\u2026";
  });
  function load() {
    box.dataset.state = "loading";
    window.cattery.fetch(box.dataset.dataUrl + "&" + query(), { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) {
        return r.json().then(function (j) { return { ok: r.ok, status: r.status, body: j }; });
      })
      .then(function (r) {
        if (r.body && r.body.signIn) { window.location.href = "/ui/sign-in?next=" + encodeURIComponent(location.pathname + location.search); return; }
        if (!r.ok) { summary.textContent = "The graph cannot be shown: " + (r.body.error || r.status); box.dataset.state = "error"; return; }
        draw(r.body);
      })
      .catch(function (e) {
        summary.textContent = "The server is unreachable: " + e;
        box.dataset.state = "error";
      });
  }

  function tables() {
    var f = state.focus, extra = {};
    if (f) {
      extra.focus = f.kind;
      if (last && last.all) extra.focus_cluster = f.cluster;
      if (f.kind === "node") { extra.ns = f.ns.join(","); extra.wl = f.wl; }
      else { extra.src_ns = f.src.ns.join(","); extra.src_wl = f.src.wl; extra.dst_ns = f.dst.ns.join(","); extra.dst_wl = f.dst.wl; extra.action = f.action; }
    }
    var url = box.dataset.tablesUrl + "&" + query(extra);
    var target = document.getElementById("graph-tables");
    var mine = ++tableSeq;
    target.dataset.state = "loading";
    // Only the latest request's answer is shown (clicks can outrun the server).
    window.cattery.fetch(url, { credentials: "same-origin" })
      .then(function (r) { return r.text(); })
      .then(function (t) {
        if (mine !== tableSeq) return;
        target.innerHTML = t;
        target.dataset.focus = f ? f.id : "";
        target.dataset.state = "ready";
        // app.js turns times into local time on this event.
        target.dispatchEvent(new CustomEvent("htmx:afterSwap", { bubbles: true }));
      }, function (e) {
        if (mine !== tableSeq) return;
        target.dataset.state = "error";
        target.textContent = "The tables could not be loaded: " + e;
      });
  }

  function end(n) { return { ns: n.data("namespaces") || [], wl: n.data("workload") || "" }; }
  function row(dl, k, v) {
    var dt = document.createElement("dt"); dt.textContent = k;
    var dd = document.createElement("dd"); dd.textContent = v;
    dl.appendChild(dt); dl.appendChild(dd);
  }
  function showPanel(title, pairs, actions) {
    document.getElementById("graph-panel-title").textContent = title;
    var dl = document.getElementById("graph-panel-body"); dl.textContent = "";
    pairs.forEach(function (p) { row(dl, p[0], p[1]); });
    var act = document.getElementById("graph-panel-actions"); act.textContent = "";
    actions.forEach(function (a) { act.appendChild(a); });
    panel.hidden = false;
  }
  function button(label, fn) {
    var b = document.createElement("button"); b.type = "button"; b.className = "small"; b.textContent = label;
    b.addEventListener("click", fn); return b;
  }
  function nsKey(n) { return n.data("cluster") + "/" + (n.data("namespaces") || [])[0]; }
  function toggleExpand(n, open) {
    var k = nsKey(n);
    state.expand = state.expand.filter(function (x) { return x !== k; });
    if (open) state.expand.push(k);
    state.expand.sort();
    keepInUrl();
    load();
  }

  function focusOn(el) {
    var t = el.data("totals") || {};
    var counts = [["Records", fmtCount(t.records)], ["Flows", fmtCount(t.flows)], ["Bytes", fmtBytes(t.bytes)], ["Denied records", fmtCount(t.denied)]];
    if (el.isEdge()) {
      var s = el.source(), d = el.target();
      state.focus = { kind: "edge", id: el.id(), cluster: s.data("cluster"), src: end(s), dst: end(d), action: el.data("action") };
      showPanel(labelOf(s.id()) + " → " + labelOf(d.id()), [["Action", el.data("action")]].concat(counts), []);
    } else {
      var kind = el.data("kind");
      if (kind === "cluster") {
        state.focus = { kind: "node", id: el.id(), cluster: el.data("cluster"), ns: [], wl: "" };
        showPanel("Cluster " + el.data("cluster"), [["Namespaces drawn", String(el.children().length)]], []);
      } else {
        state.focus = { kind: "node", id: el.id(), cluster: el.data("cluster"), ns: el.data("namespaces") || [], wl: el.data("workload") || "" };
        var actions = [];
        if (kind === "namespace") {
          actions.push(el.data("expanded") ? button("Collapse to namespace", function () { toggleExpand(el, false); })
            : button("Expand to workloads", function () { toggleExpand(el, true); }));
        }
        var pairs = [["Kind", kind], ["Cluster", el.data("cluster")]];
        if (kind === "other") pairs.push(["Merged", (el.data("namespaces") || []).join(", ") || "smaller workloads"]);
        showPanel(labelOf(el.id()), pairs.concat(counts), actions);
      }
    }
    tables();
  }

  cy.on("tap", function (evt) {
    var t = evt.target;
    if (t === cy) return;
    cy.elements().unselect(); t.select();
    focusOn(t);
    // A namespace expands to its workloads on click.
    if (t.isNode() && t.data("kind") === "namespace" && !t.data("expanded")) toggleExpand(t, true);
  });
  document.getElementById("graph-panel-close").addEventListener("click", function () {
    panel.hidden = true; state.focus = null; cy.elements().unselect(); tables();
  });
  document.getElementById("graph-refresh").addEventListener("click", function () { load(); tables(); });
  document.querySelectorAll("input[name=graph-weight]").forEach(function (r) {
    r.addEventListener("change", function () { state.weight = r.value; keepInUrl(); if (last) { signature = signature; draw(last); } });
  });
  // Refresh every 30 s while the page is visible; positions stay when the shape does.
  setInterval(function () { if (!document.hidden) load(); }, 30000);
  load();
  tables();
})();

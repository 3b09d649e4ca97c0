// Browser spec of Cattery's Manager UI, run by tests/ui.rs against real processes.
// Prints "ok <step>" per passed step; exits 1 on the first failure.
import { spawn, spawnSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { assert, env, signIn as signInAt, withBrowser } from "./harness.mjs";

const URL_ = env("UI_URL");
const TOKEN = env("UI_TOKEN");
const ALICE = env("UI_ALICE_TOKEN");
const SHOTS = env("UI_SCREENSHOTS");
const WORK = env("UI_WORK_DIR");
const BIN = env("UI_CATTERY_BIN");
const NORTH_UPSTREAM = env("UI_NORTH_UPSTREAM");
const EAST_KUBECONFIG = env("UI_EAST_KUBECONFIG");
const NP_YAML = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: cart-allow-frontend, namespace: shop}
spec:
  podSelector: {matchLabels: {app: cart}}
  policyTypes: [Ingress]
  ingress:
  - from:
    - podSelector: {matchLabels: {app: frontend}}
`;
const RED = "rgb(208,49,45)";

// Flow records whose enforced policies hold an entry for NAME with ACTION, counted by the
// flows search API with a prefix filter (not the aggregation the page uses).
async function policyHits(page, cluster, name, action) {
  const r = await page.request.post(URL_ + "/apis/logs.cattery.dev/v1/flows/search", {
    headers: { Authorization: "Bearer " + TOKEN, "Content-Type": "application/json" },
    data: { clusters: [cluster], timeRange: { from: Date.now() - 3600000, to: Date.now() + 1 }, size: 0,
      filters: [{ field: "policies.enforced_policies", prefix: `0|default|${name}|${action}|` }] },
  });
  assert(r.ok(), "flows search: " + r.status());
  return (await r.json()).hits.total.value;
}
const num = (s) => Number(String(s).replace(/[^0-9]/g, ""));

// Records of log type T in CLUSTER over the last hour matching FILTERS (the API's own
// count, independent of the page under test).
async function apiTotal(page, t, cluster, filters = []) {
  const r = await page.request.post(URL_ + `/apis/logs.cattery.dev/v1/${t}/search`, {
    headers: { Authorization: "Bearer " + TOKEN, "Content-Type": "application/json" },
    data: { clusters: [cluster], timeRange: { from: Date.now() - 3600000, to: Date.now() + 1 }, size: 0, filters },
  });
  assert(r.ok(), `${t} search: ${r.status()}`);
  return (await r.json()).hits.total.value;
}
const eq = (f, v) => ({ field: f, equals: v });
// A JSON value with its object keys sorted, to compare records whatever their key order.
function canon(v) {
  if (Array.isArray(v)) return v.map(canon);
  if (v && typeof v === "object") return Object.fromEntries(Object.keys(v).sort().map((k) => [k, canon(v[k])]));
  return v;
}
const same = (a, b) => JSON.stringify(canon(a)) === JSON.stringify(canon(b));
// Runs F (which reads the page) between two API counts until they agree (west stopped
// generating, but its last records may still be arriving); bounded.
async function steady(count, f) {
  for (let i = 0; i < 30; i++) {
    const before = await count();
    const got = await f();
    const after = await count();
    if (before === after) return { n: after, got };
    await new Promise((r) => setTimeout(r, 1000));
  }
  throw new Error("the API's count did not settle within 30 tries");
}
// Polls the page (page.waitForFunction would evaluate a string, which the CSP forbids).
async function until(page, what, fn, arg, ms = 30000) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await page.evaluate(fn, arg)) return;
    await page.waitForTimeout(200);
  }
  throw new Error(what + " did not happen within " + ms + " ms");
}

async function graphIds(page) {
  await page.locator('#graph[data-state="ready"]').waitFor();
  return page.evaluate(() => window.catteryGraph.nodes().map((n) => n.id()));
}
async function clickGraph(page, id) {
  const p = await page.evaluate((id) => {
    const el = window.catteryGraph.getElementById(id);
    if (el.empty()) return null;
    return el.isEdge() ? el.renderedMidpoint() : el.renderedPosition();
  }, id);
  assert(p, "graph element " + id + " exists");
  const bb = await page.locator("#graph").boundingBox();
  await page.mouse.click(bb.x + p.x, bb.y + p.y);
}
// page.waitForFunction evaluates a string in the page, which the CSP forbids: poll with
// page.evaluate instead (bounded).
async function expandedIs(page, id) {
  for (let i = 0; i < 200; i++) {
    const ok = await page.evaluate((id) => {
      const n = window.catteryGraph.getElementById(id);
      return document.getElementById("graph").dataset.state === "ready" && n.nonempty() && n.data("expanded") === true;
    }, id);
    if (ok) return;
    await page.waitForTimeout(100);
  }
  throw new Error("namespace " + id + " did not expand within 20 s");
}

async function shot(page, name) {
  await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
}

const signIn = (page, token, next = "/ui/clusters") => signInAt(page, URL_, token, next);

async function clusterOptions(page) {
  return page.getByRole("combobox", { name: "Cluster" }).locator("option").evaluateAll((os) => os.map((o) => o.value));
}

let agent = null;
try {
await withBrowser("ui", async (context, page, consoleErrors) => {

  // --- Sign-in: a wrong token is refused, the right one returns to the page asked for.
  await page.goto(URL_ + "/ui/logs/flows?range=15m");
  assert(page.url().includes("/ui/sign-in?next="), "redirected to sign-in with next: " + page.url());
  await shot(page, "01-sign-in");
  await page.getByLabel("Token").fill("not-a-token");
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByText("The token was not accepted").waitFor();
  await page.getByLabel("Token").fill(TOKEN);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.waitForURL((u) => u.pathname === "/ui/logs/flows" && u.search.includes("range=15m"));
  const cookies = await context.cookies();
  const sess = cookies.find((c) => c.name === "__Host-cattery-session");
  assert(sess && sess.httpOnly && sess.secure && sess.sameSite === "Strict", "session cookie flags: " + JSON.stringify(sess));
  const csp = (await page.request.get(URL_ + "/ui/overview")).headers()["content-security-policy"];
  assert(csp && csp.includes("script-src 'self'") && !csp.includes("unsafe-inline"), "CSP: " + csp);
  console.log("ok sign-in");

  // --- CSRF: a state-changing POST without the token is refused and changes nothing.
  const forged = await page.request.post(URL_ + "/ui/clusters", { form: { name: "forged", format: "kubernetes" }, maxRedirects: 0 });
  assert(forged.status() === 403, "POST without CSRF token refused: " + forged.status());
  const wrong = await page.request.post(URL_ + "/ui/clusters", { form: { name: "forged", _csrf: "0".repeat(64) }, maxRedirects: 0 });
  assert(wrong.status() === 403, "POST with a wrong CSRF token refused: " + wrong.status());
  const api = await page.request.get(URL_ + "/apis/cattery.dev/v1/managedclusters/forged", { headers: { Authorization: "Bearer " + TOKEN } });
  assert(api.status() === 404, "no cluster was created by the forged posts: " + api.status());
  console.log("ok csrf");

  // --- Switching clusters changes what the pages show.
  await page.goto(URL_ + "/ui/logs/flows?cluster=all&range=1h");
  let opts = await clusterOptions(page);
  assert(["all", "cluster", "east", "west"].every((o) => opts.includes(o)), "selector offers all, cluster, east, west: " + opts);
  const clustersShown = async () => page.locator("table.logs tbody tr.rec td:nth-child(2)").allTextContents();
  let shown = new Set(await clustersShown());
  assert(shown.has("east") || shown.has("west"), "all clusters shows records: " + [...shown]);
  await shot(page, "05-flows-all");
  await page.getByRole("combobox", { name: "Cluster" }).selectOption("east");
  await page.waitForURL((u) => u.search.includes("cluster=east"));
  assert(page.url().includes("range=1h"), "the range survives the switch: " + page.url());
  shown = new Set(await clustersShown());
  assert(shown.size === 1 && shown.has("east"), "only east's flows after switching: " + [...shown]);
  await shot(page, "06-flows-east");
  for (const [path, name] of [["/ui/logs/dns", "07-dns"], ["/ui/logs/l7", "08-l7"], ["/ui/logs/audit", "09-audit"]]) {
    await page.goto(URL_ + path + "?cluster=west&range=1h");
    const cs = new Set(await clustersShown());
    assert(cs.size <= 1 && !cs.has("east"), `${path} shows only west: ${[...cs]}`);
    await shot(page, name);
  }
  await page.goto(URL_ + "/ui/logs/audit?cluster=cluster&range=1h");
  await page.getByRole("heading", { name: "Timeline" }).waitFor();
  await shot(page, "10-timeline");
  // Row details show the full record; a bad filter is named next to the input.
  await page.goto(URL_ + "/ui/logs/flows?cluster=east&range=1h");
  await page.getByRole("button", { name: "Details" }).first().click();
  const rec = await page.locator("tr.detail:not([hidden]) pre").first().textContent();
  assert(JSON.parse(rec).cluster === "east", "details hold the record");
  await page.goto(URL_ + "/ui/logs/flows?cluster=east&where=" + encodeURIComponent("bytes_in>=lots"));
  const ferr = await page.locator("#where-error").textContent();
  assert(ferr.includes("bytes_in>=lots") && ferr.includes("not a number"), "filter error: " + ferr);
  await shot(page, "11-bad-filter");
  // Unknown cluster and log type in the URL get a page saying so.
  let r = await page.goto(URL_ + "/ui/logs/flows?cluster=atlantis");
  assert(r.status() === 404 && (await page.getByText("There is no cluster").count()) === 1, "unknown cluster page");
  r = await page.goto(URL_ + "/ui/logs/smoke?cluster=east");
  assert(r.status() === 404 && (await page.getByText("There is no log type").count()) === 1, "unknown log type page");
  await shot(page, "12-unknown-type");
  console.log("ok cluster switch");

  // --- NDJSON export: the downloaded file's lines are JSON and exactly the filtered
  // table's records (same order, every field), as many as the API counts; row details
  // show the full record.
  const westAllowed = [eq("action", "allow")];
  const { n: westN, got: exported } = await steady(() => apiTotal(page, "flows", "west", westAllowed), async () => {
    await page.goto(URL_ + "/ui/logs/flows?cluster=west&range=1h&where=" + encodeURIComponent("action=allow"));
    const [download] = await Promise.all([page.waitForEvent("download"), page.getByRole("link", { name: "Export NDJSON" }).click()]);
    assert(download.suggestedFilename() === "flows.ndjson", "export file name: " + download.suggestedFilename());
    const text = readFileSync(await download.path(), "utf8");
    assert(text.endsWith("\n"), "NDJSON ends with a newline");
    const lines = text.slice(0, -1).split("\n");
    const summary = num((await page.locator("p.summary").textContent()).split(" records")[0]);
    return { records: lines.map((l, i) => { try { return JSON.parse(l); } catch (e) { throw new Error(`line ${i + 1} is not JSON: ${l.slice(0, 200)}`); } }), summary };
  });
  assert(westN > 50, "more than one page of west's allowed flows: " + westN);
  assert(exported.records.length === westN, `the export holds every record: ${exported.records.length}, API ${westN}`);
  assert(exported.summary === westN, `the page's count: ${exported.summary}, API ${westN}`);
  assert(exported.records.every((r) => r.cluster === "west" && r.action === "allow"), "the export is filtered like the table");
  const tableRecords = (await page.locator("#log-rows tr.detail pre").allTextContents()).map((t) => JSON.parse(t));
  assert(tableRecords.length === 50, "the table's first page: " + tableRecords.length);
  const mismatch = tableRecords.findIndex((r, i) => !same(r, exported.records[i]));
  assert(mismatch === -1, `table row ${mismatch} differs from export line ${mismatch}`);
  // A row's details hold its full record (every field the export has), shown on request.
  const firstDetail = page.locator("#log-rows tr.detail").first();
  assert(await firstDetail.isHidden(), "details start hidden");
  await page.locator("#log-rows").getByRole("button", { name: "Details" }).first().click();
  assert(await firstDetail.isVisible(), "details shown");
  const shownRec = JSON.parse(await firstDetail.locator("pre").innerText());
  assert(same(shownRec, exported.records[0]) && Object.keys(shownRec).length > 10, "the details are the whole record");
  await shot(page, "11b-flows-details");
  console.log("ok logs export");

  // --- Live: switched on, a record written afterwards (the hub's audit record of a
  // kubectl request through it) appears at the top without a reload.
  await page.goto(URL_ + "/ui/logs/audit?cluster=cluster&range=15m");
  await page.evaluate(() => { window.__cattery_no_reload = true; });
  const probe = "live-probe-" + Date.now();
  const liveResponse = page.waitForResponse((r) => r.url().includes("/ui/logs/audit/live?"));
  await page.getByRole("button", { name: "Live" }).click();
  assert((await (await liveResponse).headerValue("content-type")).startsWith("text/event-stream"), "the live stream is open");
  assert((await page.getByRole("button", { name: "Live: on" }).getAttribute("aria-pressed")) === "true", "the toggle is pressed");
  const kg = spawnSync("kubectl", ["--kubeconfig", EAST_KUBECONFIG, "get", "configmap", probe, "-n", "default"], { encoding: "utf8" });
  assert(!kg.error && kg.status !== null, "kubectl ran: " + (kg.error || kg.signal));
  await until(page, "the probe's audit record in the live table",
    (p) => { const b = document.getElementById("log-rows"); return b && b.firstElementChild && b.textContent.includes(p); }, probe);
  const top = await page.evaluate((p) => {
    const rows = [...document.querySelectorAll("#log-rows tr.rec")];
    const i = rows.findIndex((r) => r.nextElementSibling && r.nextElementSibling.textContent.includes(p));
    return { i, fresh: i >= 0 && rows[i].classList.contains("fresh"), rec: i >= 0 ? rows[i].nextElementSibling.textContent : "" };
  }, probe);
  assert(top.fresh && top.i <= 20, "the new record is a fresh row at the top: " + JSON.stringify({ i: top.i, fresh: top.fresh }));
  const liveRec = JSON.parse(top.rec);
  assert(liveRec.requestURI.includes("/clusters/east/k8s/") && liveRec.requestURI.includes(probe), "the hub's record of the request: " + liveRec.requestURI);
  assert(await page.evaluate(() => window.__cattery_no_reload === true), "the page was not reloaded");
  await shot(page, "10b-audit-live");
  await page.getByRole("button", { name: "Live: on" }).click();
  assert((await page.getByRole("button", { name: "Live" }).getAttribute("aria-pressed")) === "false", "the toggle is off again");
  console.log("ok logs live");

  // --- Flow counts: the overview and the graph count each connection once; the API
  // counts the same by the rule of note 0014 ("Counting flows"): every record except the
  // source's allowed record of pod-to-pod traffic (whose twin at the destination counts).
  const twinFilters = [eq("reporter", "src"), eq("action", "allow"), eq("dest_type", "wep")];
  const westCounts = async () => {
    const [all, twins, deniedN] = await Promise.all([apiTotal(page, "flows", "west"),
      apiTotal(page, "flows", "west", twinFilters), apiTotal(page, "flows", "west", [eq("action", "deny")])]);
    return JSON.stringify({ all, distinct: all - twins, denied: deniedN });
  };
  const ov = await steady(westCounts, async () => {
    await page.goto(URL_ + "/ui/overview?cluster=west&range=1h");
    return { flows: num(await page.locator("#stat-flows").textContent()), stored: num(await page.locator("#stat-stored").textContent()),
      denied: num(await page.locator("#stat-denied").textContent()) };
  });
  const want = JSON.parse(ov.n);
  assert(want.distinct < want.all && want.denied > 0, "west has both ends' records and denied ones: " + ov.n);
  assert(ov.got.flows === want.distinct, `overview flows ${ov.got.flows}, API distinct ${want.distinct}`);
  assert(ov.got.stored === want.all, `overview records stored ${ov.got.stored}, API ${want.all}`);
  assert(ov.got.denied === want.denied, `overview denied ${ov.got.denied}, API ${want.denied}`);
  const gr = await steady(westCounts, async () => {
    await page.goto(URL_ + "/ui/graph?cluster=west&range=1h");
    await page.locator('#graph[data-state="ready"]').waitFor();
    return page.evaluate(() => {
      let all = 0, denied = 0;
      window.catteryGraph.edges().forEach((e) => { all += e.data("totals").records; if (e.data("action") === "deny") denied += e.data("totals").records; });
      const cells = [...document.querySelectorAll("#graph-edges tr")].map((r) => Number(r.children[5].textContent.replace(/[^0-9]/g, "")));
      return { all, denied, table: cells.reduce((a, b) => a + b, 0) };
    });
  });
  const wantG = JSON.parse(gr.n);
  assert(gr.got.all === wantG.distinct, `graph edges' flows ${gr.got.all}, API distinct ${wantG.distinct}`);
  assert(gr.got.table === wantG.distinct, `"Edges as a table" flows ${gr.got.table}, API distinct ${wantG.distinct}`);
  assert(gr.got.denied === wantG.denied, `graph denied ${gr.got.denied}, API ${wantG.denied}`);
  console.log("ok flow counts");


  // --- Service graph: namespaces, expanding to workloads, the denied edge in red,
  // clicking it narrows the tables to its denied flows; switching clusters changes it.
  await page.goto(URL_ + "/ui/graph?cluster=east&range=1h");
  let ids = await graphIds(page);
  assert(ids.includes("n:east/shop") && ids.includes("n:east/payments"), "east's namespaces are nodes: " + ids);
  assert(ids.every((i) => i.includes(":east/")), "only east's nodes: " + ids);
  await page.locator('#graph-tables[data-state="ready"] section[data-type="flows"]').waitFor();
  await shot(page, "13-graph");
  await clickGraph(page, "n:east/shop");
  await expandedIs(page, "n:east/shop");
  assert(page.url().includes("expand=east%2Fshop") || page.url().includes("expand=east/shop"), "expansion kept in the URL: " + page.url());
  await page.locator("#graph-panel:not([hidden])").waitFor();
  await clickGraph(page, "n:east/payments");
  await expandedIs(page, "n:east/payments");
  const denied = await page.evaluate(() => {
    const es = window.catteryGraph.edges().filter((e) => (e.source().data("workload") || "").startsWith("checkout-")
      && (e.target().data("workload") || "").startsWith("db-") && e.data("action") === "deny");
    const allowed = window.catteryGraph.edges('[action = "allow"]');
    return { ids: es.map((e) => e.id()), color: es.length ? es[0].style("line-color") : null,
      allowedColors: [...new Set(allowed.map((e) => e.style("line-color")))] };
  });
  assert(denied.ids.length === 1, "one denied shop/checkout -> payments/db edge: " + JSON.stringify(denied));
  assert(denied.color.replace(/ /g, "") === RED, "the denied edge is red: " + denied.color);
  assert(denied.allowedColors.length > 0 && !denied.allowedColors.some((c) => c.replace(/ /g, "") === RED), "allowed edges are not red: " + denied.allowedColors);
  await clickGraph(page, denied.ids[0]);
  await page.locator(`#graph-tables[data-state="ready"][data-focus="${denied.ids[0]}"]`).waitFor();
  const title = await page.locator("#graph-panel-title").textContent();
  assert(title.includes("checkout") && title.includes("db"), "the side panel names the edge: " + title);
  const flowRows = page.locator('#graph-tables section[data-type="flows"] tbody tr.rec');
  const nRows = await flowRows.count();
  assert(nRows > 0, "the flows table shows the edge's flows");
  const cells = await flowRows.evaluateAll((rs) => rs.map((r) => [...r.children].slice(2, 5).map((c) => c.textContent.trim())));
  assert(cells.every(([a, s, d]) => a === "deny" && s.startsWith("shop/checkout-") && d.startsWith("payments/db-")),
    "the table holds only denied checkout -> db flows: " + JSON.stringify(cells.slice(0, 3)));
  await shot(page, "13b-graph-denied-edge");
  await page.goto(URL_ + "/ui/graph?cluster=west&range=1h");
  ids = await graphIds(page);
  assert(ids.length > 0 && ids.every((i) => i.includes(":west/")), "west's graph shows only west: " + ids);
  await page.goto(URL_ + "/ui/graph?cluster=all&range=1h");
  ids = await graphIds(page);
  assert(ids.includes("c:east") && ids.includes("c:west") && ids.includes("n:west/shop"), "all clusters: nodes grouped per cluster: " + ids);
  const parent = await page.evaluate(() => window.catteryGraph.getElementById("n:east/shop").parent().id());
  assert(parent === "c:east", "east's namespaces are inside the east compound node: " + parent);
  await shot(page, "13c-graph-all");
  console.log("ok graph");

  // --- Policies: a NetworkPolicy created through the proxy (kubectl through the hub) is
  // listed with its hit counts, which match what the flows search API counts.
  const npFile = join(WORK, "cart-allow-frontend.yaml");
  writeFileSync(npFile, NP_YAML);
  const k = spawnSync("kubectl", ["--kubeconfig", EAST_KUBECONFIG, "apply", "-f", npFile], { encoding: "utf8" });
  assert(k.status === 0, "kubectl apply through the hub: " + k.stderr);
  const polRow = (name) => page.locator(`#policies tr[data-policy="NetworkPolicy/${name}"]`);
  let allowedShown = 0;
  for (let i = 0; i < 40 && allowedShown === 0; i++) {
    await page.goto(URL_ + "/ui/policies?cluster=east&range=1h");
    if (await polRow("shop/cart-allow-frontend").count()) allowedShown = num(await polRow("shop/cart-allow-frontend").locator('[data-field="allowed"]').textContent());
    if (allowedShown === 0) await page.waitForTimeout(1000);
  }
  assert(allowedShown > 0, "the new policy gets allowed hits");
  for (const [name, field, action] of [["shop/cart-allow-frontend", "allowed", "allow"], ["payments/db-allow-api", "denied", "deny"],
    ["payments/db-allow-api", "allowed", "allow"]]) {
    const before = await policyHits(page, "east", name.replace("/", "/knp.default."), action);
    await page.goto(URL_ + "/ui/policies?cluster=east&range=1h");
    const shownN = num(await polRow(name).locator(`[data-field="${field}"]`).textContent());
    const after = await policyHits(page, "east", name.replace("/", "/knp.default."), action);
    assert(before <= shownN && shownN <= after && after > 0, `${name} ${field}: page ${shownN}, API ${before}..${after}`);
  }
  await polRow("shop/cart-allow-frontend").getByText("YAML").click();
  const y = await polRow("shop/cart-allow-frontend").locator("pre").textContent();
  assert(y.includes("kind: NetworkPolicy") && y.includes("name: cart-allow-frontend") && y.includes("frontend"), "YAML view: " + y);
  const dl = await polRow("shop/cart-allow-frontend").getByRole("link", { name: "Download" }).getAttribute("href");
  const exp = await page.request.get(URL_ + dl);
  assert(exp.ok() && (await exp.text()).includes("name: cart-allow-frontend") && exp.headers()["content-disposition"].includes("attachment"), "YAML export");
  assert((await page.locator("#calico-note").count()) === 1, "says the cluster does not serve projectcalico.org");
  await shot(page, "14-policies");
  await page.goto(URL_ + "/ui/policies?cluster=west&range=1h");
  assert((await polRow("payments/db-allow-api").count()) === 1, "west lists its own seeded policy");
  assert((await polRow("shop/cart-allow-frontend").count()) === 0, "west does not list east's new policy");
  await shot(page, "14b-policies-west");
  console.log("ok policies");

  // --- Add a cluster in the UI, start its agent with the shown agent config, watch the
  // row turn connected without a reload.
  await page.goto(URL_ + "/ui/clusters");
  await shot(page, "03-clusters");
  await page.getByRole("button", { name: "Add cluster" }).click();
  await page.getByLabel("Name").fill("north");
  await page.getByLabel("Labels").fill("env=test\nregion=north");
  await page.getByLabel("Agent config").check();
  await shot(page, "04-add-cluster");
  await page.getByRole("button", { name: "Add cluster" }).click();
  await page.getByRole("heading", { name: "Cluster north added" }).waitFor();
  const manifest = await page.locator("#manifest").textContent();
  assert(manifest.includes("kind: AgentConfig") && manifest.includes("privateKey"), "agent config shown");
  assert((await page.getByRole("button", { name: "Copy" }).count()) === 1, "Copy button");
  assert((await page.getByRole("button", { name: "Download" }).count()) === 1, "Download button");
  await shot(page, "04b-cluster-added");
  // Copy puts exactly the shown manifest on the clipboard; Download saves it to a file.
  await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: URL_ });
  await page.getByRole("button", { name: "Copy" }).click();
  await page.getByRole("button", { name: "Copied" }).waitFor();
  const clip = await page.evaluate(() => navigator.clipboard.readText());
  assert(clip === manifest, `the clipboard holds the manifest (${clip.length} vs ${manifest.length} characters)`);
  const [saved] = await Promise.all([page.waitForEvent("download"), page.getByRole("button", { name: "Download" }).click()]);
  assert(/north.*\.ya?ml$/.test(saved.suggestedFilename()), "download name: " + saved.suggestedFilename());
  assert(readFileSync(await saved.path(), "utf8") === manifest, "the downloaded file is the shown manifest");
  // Shown once: reloading (the browser resends the form) does not show it again.
  try { await page.reload(); } catch (e) { /* a resubmission the browser refuses is fine too */ }
  assert((await page.locator("#manifest").count()) === 0, "no manifest after a reload");
  // Chromium resends the POST: the API refuses to create north twice, and the page says so.
  assert(/already exists/.test(await page.locator("main").innerText()), "the resent form is refused: " + page.url());
  const reloaded = await page.content();
  assert(!reloaded.includes("privateKey") && !reloaded.includes("BEGIN"), "no key material after a reload");
  await shot(page, "04c-cluster-added-reloaded");
  console.log("ok add cluster copy download once");
  // A disconnected cluster's policies page says so (hit counts would still show).
  await page.goto(URL_ + "/ui/policies?cluster=north");
  await page.getByText("Cluster north cannot be reached").waitFor();
  await page.goto(URL_ + "/ui/clusters?filter=north");
  const row = page.locator('tr[data-cluster="north"]');
  assert((await row.locator('[data-field="status"]').textContent()) !== "Connected", "north starts disconnected");
  // The overview's counts (the API's, without listing every cluster) against the full
  // list read here.
  const overviewCounts = async () => {
    const l = await (await page.request.get(URL_ + "/apis/cattery.dev/v1/managedclusters", { headers: { Authorization: "Bearer " + TOKEN } })).json();
    const up = l.items.filter((c) => (c.status?.conditions || []).some((k) => k.type === "ManagedClusterConnected" && k.status === "True")).length;
    await page.goto(URL_ + "/ui/overview?cluster=all&range=1h");
    const shown = { up: num(await page.locator("#stat-up").textContent()), down: num(await page.locator("#stat-down").textContent()) };
    return { shown, want: { up, down: l.items.length - up } };
  };
  let oc = await overviewCounts();
  assert(oc.want.down >= 1 && oc.want.up >= 2 && JSON.stringify(oc.shown) === JSON.stringify(oc.want), "overview cluster counts: " + JSON.stringify(oc));
  await page.goto(URL_ + "/ui/clusters?filter=north");
  await page.evaluate(() => { window.__cattery_no_reload = true; });
  const cfg = join(WORK, "agent-north-from-ui.yaml");
  writeFileSync(cfg, manifest, { mode: 0o600 });
  agent = spawn(BIN, ["agent", "--config", cfg, "--upstream", NORTH_UPSTREAM, "--reconnect-max-delay", "1s"], { stdio: "ignore" });
  await row.locator('[data-field="status"]', { hasText: "Connected" }).waitFor({ timeout: 30000 });
  assert(await page.evaluate(() => window.__cattery_no_reload === true), "the page was not reloaded");
  await row.locator('[data-field="remote"]', { hasText: "127.0.0.1" }).waitFor({ timeout: 10000 });
  await row.locator('[data-field="agent"]', { hasText: "0." }).waitFor({ timeout: 10000 });
  await shot(page, "03b-clusters-north-connected");
  const ocAfter = await overviewCounts();
  assert(ocAfter.shown.up === oc.shown.up + 1 && ocAfter.shown.down === oc.shown.down - 1 &&
    JSON.stringify(ocAfter.shown) === JSON.stringify(ocAfter.want), "north counted connected: " + JSON.stringify(ocAfter));
  await page.goto(URL_ + "/ui/clusters?filter=north");
  console.log("ok add cluster live");

  // Remove with confirmation.
  await row.getByRole("link", { name: /Remove/ }).click();
  await page.getByRole("button", { name: "Remove north" }).click();
  await page.waitForURL((u) => u.pathname === "/ui/clusters");
  assert((await page.locator('tr[data-cluster="north"]').count()) === 0, "north removed");

  // Other pages render (screenshots).
  for (const [path, name] of [["/ui/overview?cluster=all", "02-overview"], ["/ui/access", "15-access"]]) {
    r = await page.goto(URL_ + path);
    assert(r.status() === 200, `${path}: ${r.status()}`);
    await shot(page, name);
  }

  // --- Sign-out ends the session on the server: the old cookie no longer works.
  const before = (await context.cookies()).find((c) => c.name === "__Host-cattery-session").value;
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.waitForURL((u) => u.pathname === "/ui/sign-in");
  const replay = await page.request.get(URL_ + "/ui/clusters", { headers: { Cookie: "__Host-cattery-session=" + before }, maxRedirects: 0 });
  assert(replay.status() === 303 && replay.headers()["location"].startsWith("/ui/sign-in"), "old session refused: " + replay.status());
  console.log("ok sign-out");

  // --- A user bound to one cluster is offered only it, and gets a clear 403 elsewhere.
  await signIn(page, ALICE, "/ui/logs/flows");
  opts = await clusterOptions(page);
  assert(opts.length === 1 && opts[0] === "east", "alice is offered only east: " + opts);
  const aliceShown = new Set(await clustersShown());
  assert(aliceShown.size <= 1 && !aliceShown.has("west"), "alice sees only east: " + [...aliceShown]);
  await shot(page, "16-alice-flows");
  r = await page.goto(URL_ + "/ui/logs/flows?cluster=west");
  assert(r.status() === 403, "west is 403 for alice: " + r.status());
  const why = await page.locator(".notice .reason").textContent();
  assert(why.includes("west") && why.includes("alice"), "the 403 names the missing permission: " + why);
  await page.getByRole("heading", { name: "Permission needed" }).waitFor();
  await shot(page, "17-alice-forbidden");
  r = await page.goto(URL_ + "/ui/logs/audit?cluster=east");
  assert(r.status() === 403, "audit of east is 403 for alice: " + r.status());
  console.log("ok bound user");

  const cspErrors = consoleErrors.filter((e) => /Content Security Policy|Refused to/.test(e));
  assert(cspErrors.length === 0, "no CSP violations: " + cspErrors.join("\n"));
  console.log("ok no csp violations");
});
} finally {
  if (agent) agent.kill("SIGKILL");
}

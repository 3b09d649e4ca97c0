// Browser spec of Cattery's Manager UI, run by tests/ui.rs against real processes.
// Prints "ok <step>" per passed step; exits 1 on the first failure.
import { chromium } from "playwright-core";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`environment variable ${k} is required`);
  return v;
};
const URL_ = env("UI_URL");
const TOKEN = env("UI_TOKEN");
const ALICE = env("UI_ALICE_TOKEN");
const SHOTS = env("UI_SCREENSHOTS");
const WORK = env("UI_WORK_DIR");
const BIN = env("UI_CATTERY_BIN");
const NORTH_UPSTREAM = env("UI_NORTH_UPSTREAM");

function assert(cond, msg) {
  if (!cond) throw new Error("assertion failed: " + msg);
}
async function shot(page, name) {
  await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
}
const consoleErrors = [];

async function signIn(page, token, next = "/ui/clusters") {
  await page.goto(URL_ + next);
  assert(page.url().includes("/ui/sign-in"), "unsigned request goes to sign-in: " + page.url());
  await page.getByLabel("Token").fill(token);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.waitForURL((u) => !u.pathname.startsWith("/ui/sign-in"));
}

async function clusterOptions(page) {
  return page.getByRole("combobox", { name: "Cluster" }).locator("option").evaluateAll((os) => os.map((o) => o.value));
}

let agent = null;
const userDataDir = mkdtempSync(join(tmpdir(), "cattery-ui-chromium-"));
const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath: env("UI_CHROMIUM"),
  headless: true,
  ignoreHTTPSErrors: true,
  viewport: { width: 1440, height: 900 },
  args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--disable-quic"],
});
context.setDefaultTimeout(20000);
try {
  const page = context.pages()[0] || (await context.newPage());
  page.on("console", (m) => { if (m.type() === "error") consoleErrors.push(m.text()); });
  page.on("pageerror", (e) => consoleErrors.push(String(e)));

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
  await page.goto(URL_ + "/ui/clusters?filter=north");
  const row = page.locator('tr[data-cluster="north"]');
  assert((await row.locator('[data-field="status"]').textContent()) !== "Connected", "north starts disconnected");
  await page.evaluate(() => { window.__cattery_no_reload = true; });
  const cfg = join(WORK, "agent-north-from-ui.yaml");
  writeFileSync(cfg, manifest, { mode: 0o600 });
  agent = spawn(BIN, ["agent", "--config", cfg, "--upstream", NORTH_UPSTREAM, "--reconnect-max-delay", "1s"], { stdio: "ignore" });
  await row.locator('[data-field="status"]', { hasText: "Connected" }).waitFor({ timeout: 30000 });
  assert(await page.evaluate(() => window.__cattery_no_reload === true), "the page was not reloaded");
  await row.locator('[data-field="remote"]', { hasText: "127.0.0.1" }).waitFor({ timeout: 10000 });
  await row.locator('[data-field="agent"]', { hasText: "0." }).waitFor({ timeout: 10000 });
  await shot(page, "03b-clusters-north-connected");
  console.log("ok add cluster live");

  // Remove with confirmation.
  await row.getByRole("link", { name: /Remove/ }).click();
  await page.getByRole("button", { name: "Remove north" }).click();
  await page.waitForURL((u) => u.pathname === "/ui/clusters");
  assert((await page.locator('tr[data-cluster="north"]').count()) === 0, "north removed");

  // Other pages render (screenshots).
  for (const [path, name] of [["/ui/overview?cluster=all", "02-overview"], ["/ui/graph?cluster=east", "13-graph"],
    ["/ui/policies?cluster=east", "14-policies"], ["/ui/access", "15-access"]]) {
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
} catch (e) {
  console.log("FAILED: " + (e && e.stack ? e.stack : e));
  try { await context.pages()[0].screenshot({ path: join(SHOTS, "failure.png"), fullPage: true }); } catch {}
  if (consoleErrors.length) console.log("browser console errors:\n" + consoleErrors.join("\n"));
  process.exitCode = 1;
} finally {
  if (agent) agent.kill("SIGKILL");
  await context.close();
  rmSync(userDataDir, { recursive: true, force: true });
}

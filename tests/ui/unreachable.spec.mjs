// Browser spec of the "server unreachable" state, run by tests/ui_sso.rs last: it stops
// the server process (UI_SERVER_PID) while a page is open, then expects each kind of
// request a page makes for data — htmx (the clusters page's filter), fetch (the service
// graph) — to be retried a bounded number of times and then the one "unreachable" notice.
// Prints "ok <step>" per passed step; exits 1 on the first failure.
import { connect } from "node:net";
import { join } from "node:path";
import { assert, env, signIn, withBrowser } from "./harness.mjs";

const URL_ = env("UI_URL");
const TOKEN = env("UI_TOKEN");
const SHOTS = env("UI_SCREENSHOTS");
const PID = parseInt(env("UI_SERVER_PID"), 10);
const MESSAGE = "Server unreachable \u2014 retrying stopped, reload to try again.";

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
// Whether something accepts connections on the server's port.
const listening = () => new Promise((resolve) => {
  const u = new URL(URL_);
  const s = connect({ host: u.hostname, port: parseInt(u.port, 10) });
  s.once("connect", () => { s.destroy(); resolve(true); });
  s.once("error", () => resolve(false));
});

await withBrowser("unreachable", async (context, page) => {
  await signIn(page, URL_, TOKEN, "/ui/clusters");
  // A second page, open on the graph, to see fetch give up as well.
  const graph = await context.newPage();
  await graph.goto(URL_ + "/ui/graph?cluster=cluster&range=1h");
  await graph.locator("#graph[data-state]").waitFor();
  const graphRequests = [];
  graph.on("request", (r) => { if (new URL(r.url()).pathname.startsWith("/ui/graph/data")) graphRequests.push(r.url()); });

  // The filter works while the server runs.
  const filterRequests = [];
  page.on("request", (r) => {
    const u = new URL(r.url());
    if (u.pathname === "/ui/clusters" && u.searchParams.has("filter") && r.resourceType() !== "document") filterRequests.push(u.href);
  });
  await page.locator("#filter").fill("zz");
  // (page.waitForFunction would evaluate a string, which the CSP forbids: poll, bounded.)
  for (let i = 0; i < 100 && !(await page.evaluate(() => location.search.includes("filter=zz"))); i++) await sleep(100);
  assert(page.url().includes("filter=zz"), "the filter applied: " + page.url());
  assert(filterRequests.length === 1, "one htmx request while the server runs: " + filterRequests.length);
  assert(!(await page.locator("#unreachable").count()), "no unreachable state while the server runs");

  // Stop the server, wait (bounded) until its port refuses connections.
  process.kill(PID, "SIGKILL");
  for (let i = 0; i < 100 && (await listening()); i++) await sleep(100);
  assert(!(await listening()), "the server stopped listening");
  filterRequests.length = 0;
  await page.locator("#filter").fill("zzz");
  const alert = page.locator("#unreachable[role=alert]");
  await alert.waitFor({ state: "visible", timeout: 30000 });
  assert((await alert.innerText()).trim() === MESSAGE, "the message: " + (await alert.innerText()));
  // Retried (more than the one request), bounded (at most 1 + 3), then stopped.
  assert(filterRequests.length >= 2 && filterRequests.length <= 4, "bounded retries: " + filterRequests.length);
  assert((await alert.count()) === 1, "the state is shown once");
  await page.screenshot({ path: join(SHOTS, "server-unreachable.png"), fullPage: true });
  console.log("ok server unreachable");

  // The graph's refresh (a fetch) gives up the same way.
  await graph.getByRole("button", { name: "Refresh" }).click();
  const graphAlert = graph.locator("#unreachable[role=alert]");
  await graphAlert.waitFor({ state: "visible", timeout: 30000 });
  assert((await graphAlert.innerText()).trim() === MESSAGE, "the graph page's message: " + (await graphAlert.innerText()));
  assert(graphRequests.length >= 2 && graphRequests.length <= 4, "bounded graph retries: " + graphRequests.length);
  console.log("ok server unreachable graph");
});

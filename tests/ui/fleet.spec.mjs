// Browser spec of the banner's cluster selector with a fleet larger than it lists, run by
// tests/ui_fleet.rs. Prints "ok <step>" per passed step; exits 1 on the first failure.
import { join } from "node:path";
import { assert, env, signIn as signInAt, withBrowser } from "./harness.mjs";

const URL_ = env("UI_URL");
const TOKEN = env("UI_TOKEN");
const BOB = env("UI_BOB_TOKEN");
const FLEET = Number(env("UI_FLEET"));
const SHOTS = env("UI_SCREENSHOTS");

const signIn = (page, token, next) => signInAt(page, URL_, token, next);
const selector = (page) => page.getByRole("combobox", { name: "Cluster" });
async function options(page) {
  return selector(page).locator("option").evaluateAll((os) => os.map((o) => ({ value: o.value, disabled: o.disabled })));
}
const clusterValues = (opts) => opts.filter((o) => o.value.startsWith("c-")).map((o) => o.value);
// Polls (bounded) until the selector's options satisfy `ok`.
async function optionsUntil(page, ok, what) {
  let last = [];
  for (let i = 0; i < 100; i++) {
    last = await options(page);
    if (ok(last)) return last;
    await page.waitForTimeout(100);
  }
  throw new Error(what + " within 10 s; options: " + JSON.stringify(last.map((o) => o.value)));
}

await withBrowser("fleet", async (context, page) => {
  // --- The first page lists the first 100 clusters by name and says there are more.
  await signIn(page, TOKEN, "/ui/overview");
  let opts = await options(page);
  let names = clusterValues(opts);
  assert(names.length === 100, "100 clusters listed of " + FLEET + ": " + names.length);
  assert(names[0] === "c-000" && names[99] === "c-099", "the first by name: " + names[0] + ".." + names[99]);
  assert(opts.some((o) => o.disabled && o.value === ""), "a disabled 'more clusters' option");
  assert(opts[0].value === "all", "All clusters first: " + opts[0].value);
  await page.screenshot({ path: join(SHOTS, "fleet-01-first-page.png"), fullPage: true });
  console.log("ok first page");

  // --- Typing searches the whole fleet on the server: c-14 matches c-140..c-149 only.
  await page.getByLabel("Filter clusters").fill("c-14");
  opts = await optionsUntil(page, (os) => clusterValues(os).includes("c-149"), "the search answer arrives");
  names = clusterValues(opts);
  const want = Array.from({ length: 10 }, (_, i) => "c-14" + i);
  assert(JSON.stringify(names) === JSON.stringify(want), "c-14 finds exactly c-140..c-149: " + names);
  assert(!opts.some((o) => o.disabled && o.value === ""), "no 'more' option when all matches are listed");
  await page.screenshot({ path: join(SHOTS, "fleet-02-search.png"), fullPage: true });
  console.log("ok search");

  // --- Enter picks the first match; the page is then that cluster's, and a reload keeps
  // it although it is not among the first 100.
  await page.getByLabel("Filter clusters").fill("c-145");
  await optionsUntil(page, (os) => JSON.stringify(clusterValues(os)) === JSON.stringify(["c-145"]), "c-145 alone");
  await page.getByLabel("Filter clusters").press("Enter");
  await page.waitForURL((u) => u.searchParams.get("cluster") === "c-145");
  await page.getByRole("heading", { name: /cluster c-145/ }).first().waitFor();
  await page.reload();
  const selected = await selector(page).inputValue();
  assert(selected === "c-145", "the reloaded page keeps c-145 selected: " + selected);
  opts = await options(page);
  assert(!opts.some((o) => o.value === "c-145" && /not available/.test(o.value)), "c-145 is not marked unavailable");
  const text = await selector(page).locator("option:checked").textContent();
  assert(!/not available/.test(text), "the selected option: " + text);
  console.log("ok pick");

  // --- A user who may see only c-149 (last by name) is offered exactly it.
  await context.clearCookies();
  await signIn(page, BOB, "/ui/overview");
  opts = await options(page);
  names = clusterValues(opts);
  assert(JSON.stringify(names) === JSON.stringify(["c-149"]), "bob is offered only c-149: " + names);
  const r = await page.request.get(URL_ + "/apis/cattery.dev/v1/managedclusters?limit=5", {
    headers: { Authorization: "Bearer " + BOB },
  });
  const list = await r.json();
  assert(list.items.length === 1 && list.items[0].metadata.name === "c-149", "API page of 5 for bob: " + JSON.stringify(list.items.map((i) => i.metadata.name)));
  assert(!list.metadata.continue, "no continue token after the last allowed cluster");
  console.log("ok late user");
});

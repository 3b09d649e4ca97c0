// Browser spec of "Sign in with SSO" and of session expiry, run by tests/ui_sso.rs against
// a real server configured with the test issuer (tests/ui/oidc-issuer.mjs).
// Prints "ok <step>" per passed step; exits 1 on the first failure.
import { join } from "node:path";
import { assert, env, withBrowser } from "./harness.mjs";

const URL_ = env("UI_URL");
const TOKEN = env("UI_TOKEN");
const ISSUER = env("UI_ISSUER");
const SHOTS = env("UI_SCREENSHOTS");
const IDLE_MS = parseInt(env("UI_IDLE_MS"), 10);

async function shot(page, name) {
  await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

await withBrowser("ui-sso", async (context, page) => {
  const callbacks = [];
  page.on("request", (r) => { if (r.url().includes("/ui/sign-in/sso/callback")) callbacks.push(r.url()); });

  // Goes from Cattery's sign-in page to the issuer's login form; returns its URL.
  async function toIssuer(next) {
    await page.goto(URL_ + next);
    assert(page.url().includes("/ui/sign-in?next="), "redirected to sign-in: " + page.url());
    await page.getByRole("link", { name: "Sign in with SSO" }).click();
    await page.waitForURL((u) => u.href.startsWith(ISSUER + "/authorize"));
    return new URL(page.url());
  }
  async function signInError() {
    await page.waitForURL((u) => u.pathname === "/ui/sign-in/sso/callback");
    return (await page.getByRole("alert").innerText()).trim();
  }

  // --- The authorization request carries state, nonce and an S256 challenge; approving
  // at the issuer lands on the page asked for, signed in as the mapped OIDC identity.
  const auth = await toIssuer("/ui/access");
  for (const k of ["state", "nonce", "code_challenge"]) assert(auth.searchParams.get(k), `authorization request has ${k}`);
  assert(auth.searchParams.get("code_challenge_method") === "S256", "PKCE S256");
  assert(auth.searchParams.get("redirect_uri") === URL_ + "/ui/sign-in/sso/callback",
    "redirect URI from config: " + auth.searchParams.get("redirect_uri"));
  await shot(page, "sso-issuer");
  await page.getByRole("button", { name: "Approve" }).click();
  await page.waitForURL((u) => u.pathname === "/ui/access");
  const who = await page.locator("main").innerText();
  assert(who.includes("oidc:carol"), "signed in as oidc:carol: " + who.slice(0, 300));
  assert(who.includes("oidc:sso-admins"), "groups mapped with the prefix");
  const cookies = await context.cookies(URL_);
  const session = cookies.find((c) => c.name === "__Host-cattery-session");
  assert(session && session.httpOnly && session.secure && session.sameSite === "Strict", "session cookie flags");
  assert(!cookies.find((c) => c.name === "__Host-cattery-sso"), "the pending sign-in cookie is cleared");
  await shot(page, "sso-signed-in");
  console.log("ok sso sign-in");

  // --- The same callback again (a replay) finds no pending sign-in.
  const used = callbacks[callbacks.length - 1];
  assert(used && new URL(used).searchParams.get("code"), "saw the callback with a code");
  await page.goto(used);
  let msg = (await page.getByRole("alert").innerText()).trim();
  assert(/No SSO sign-in is waiting/.test(msg), "replayed callback: " + msg);
  console.log("ok sso replayed callback");

  // --- An old code presented with a new attempt's state: the issuer refuses the code.
  await context.clearCookies();
  const second = await toIssuer("/ui/overview");
  const oldCode = new URL(used).searchParams.get("code");
  await page.goto(`${URL_}/ui/sign-in/sso/callback?code=${encodeURIComponent(oldCode)}&state=${encodeURIComponent(second.searchParams.get("state"))}`);
  msg = (await page.getByRole("alert").innerText()).trim();
  assert(/refused the authorization code \(invalid_grant\)/.test(msg) && /already used/.test(msg), "replayed code: " + msg);
  await shot(page, "sso-replayed-code");
  console.log("ok sso replayed code");

  // --- A callback whose state is not this browser's attempt.
  await context.clearCookies();
  await toIssuer("/ui/overview");
  await page.goto(`${URL_}/ui/sign-in/sso/callback?code=whatever&state=not-the-state`);
  msg = (await page.getByRole("alert").innerText()).trim();
  assert(/state does not match/.test(msg), "bad state: " + msg);
  console.log("ok sso bad state");

  // --- Denied at the issuer.
  await context.clearCookies();
  await toIssuer("/ui/overview");
  await page.getByRole("button", { name: "Deny" }).click();
  msg = await signInError();
  assert(/refused the sign-in \(access_denied\)/.test(msg) && /denied the request/.test(msg), "access denied: " + msg);
  assert(await page.getByLabel("Token").isVisible(), "back on the sign-in form");
  await shot(page, "sso-denied");
  console.log("ok sso access denied");

  // --- The session ends when the ID token expires, though it is in use.
  await context.clearCookies();
  await toIssuer("/ui/overview");
  await page.getByLabel("Lifetime").fill("4");
  await page.getByRole("button", { name: "Approve" }).click();
  await page.waitForURL((u) => u.pathname === "/ui/overview");
  const signedInAt = Date.now();
  let ended = false;
  for (let i = 0; i < 20 && !ended; i++) {
    await sleep(500);
    await page.goto(URL_ + "/ui/logs/flows?range=15m");
    ended = page.url().includes("/ui/sign-in");
  }
  const after = Date.now() - signedInAt;
  assert(ended, "the session ended with the ID token");
  assert(after >= 2500, `not before the token's expiry (${after} ms)`);
  assert(page.url().includes("next=%2Fui%2Flogs%2Fflows"), "sign-in comes back to the page: " + page.url());
  console.log("ok sso session ends with the id token");

  // --- With a refresh token, the same short-lived ID token is renewed ahead of its expiry
  // while the person keeps working: never sent to sign in, across several lifetimes.
  const issuerState = async () => (await fetch(ISSUER + "/test/state")).json();
  await context.clearCookies();
  await toIssuer("/ui/overview");
  await page.getByLabel("Username").fill("dave");
  await page.getByLabel("Lifetime").fill("4");
  await page.getByLabel("Offline access").check();
  await page.getByRole("button", { name: "Approve" }).click();
  await page.waitForURL((u) => u.pathname === "/ui/overview");
  const refreshedFrom = Date.now();
  const grants = async () => (await issuerState()).refreshGrants.filter((g) => g.user === "dave").length;
  // Until three refreshes happened (a refreshed ID token was itself refreshed, rotating the
  // refresh token each time), bounded at 30 s; every page in between is served signed in.
  let pagesServed = 0;
  while ((await grants()) < 3 && Date.now() - refreshedFrom < 30000) {
    await sleep(500);
    await page.goto(URL_ + "/ui/access");
    assert(!page.url().includes("/ui/sign-in"), `sent to sign in after ${Date.now() - refreshedFrom} ms: ${page.url()}`);
    pagesServed++;
  }
  const elapsed = Date.now() - refreshedFrom;
  assert((await grants()) >= 3, "the issuer saw three refresh grants: " + JSON.stringify(await issuerState()));
  assert(elapsed > 4000, `kept signed in past the first ID token's lifetime (${elapsed} ms, ${pagesServed} pages)`);
  const whoNow = await page.locator("main").innerText();
  assert(whoNow.includes("oidc:dave"), "still oidc:dave after the refreshes: " + whoNow.slice(0, 200));
  let st = await issuerState();
  assert(st.activeRefreshTokens.dave === 1, "one live refresh token (rotated each time): " + JSON.stringify(st.activeRefreshTokens));
  await shot(page, "sso-refreshed");
  console.log("ok sso refresh");

  // --- Sign-out revokes the refresh token at the issuer (RFC 7009) and ends the session
  // there (RP-initiated logout), which sends the browser back to Cattery's sign-in page.
  const revokedBefore = st.revocations.length;
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.waitForURL((u) => u.href.startsWith(URL_ + "/ui/sign-in"));
  st = await issuerState();
  assert(st.logouts.some((l) => l.user === "dave"), "signed out at the issuer: " + JSON.stringify(st.logouts));
  const rev = st.revocations.slice(revokedBefore);
  assert(rev.length === 1 && rev[0].user === "dave" && rev[0].was === "active" && rev[0].hint === "refresh_token",
    "the live refresh token was revoked: " + JSON.stringify(rev));
  assert(!st.activeRefreshTokens.dave, "no live refresh token left: " + JSON.stringify(st.activeRefreshTokens));
  await page.goto(URL_ + "/ui/access");
  assert(page.url().includes("/ui/sign-in?next="), "the session is gone: " + page.url());
  await shot(page, "sso-signed-out");
  console.log("ok sso sign-out at the issuer");

  // --- An idle session goes back to sign-in, and then to the page asked for.
  await context.clearCookies();
  await page.goto(URL_ + "/ui/overview");
  await page.getByLabel("Token").fill(TOKEN);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.waitForURL((u) => u.pathname === "/ui/overview");
  // The condition is time passing without a request: nothing to poll without resetting it.
  await sleep(IDLE_MS + 1000);
  await page.goto(URL_ + "/ui/logs/dns?range=6h");
  assert(page.url().includes("/ui/sign-in?next="), "idle session back to sign-in: " + page.url());
  await shot(page, "session-expired");
  await page.getByLabel("Token").fill(TOKEN);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.waitForURL((u) => u.pathname === "/ui/logs/dns");
  assert(new URL(page.url()).searchParams.get("range") === "6h", "the page asked for, with its query: " + page.url());
  console.log("ok idle session expiry");

  // --- Keyboard: Tab reaches the banner's cluster filter and selector (with a visible
  // focus ring); typing in the filter and pressing Enter selects the match.
  await page.goto(URL_ + "/ui/overview");
  const focused = async () => page.evaluate(() => {
    const el = document.activeElement;
    const label = el && el.id ? document.querySelector(`label[for="${el.id}"]`) : null;
    return { id: el ? el.id : "", label: label ? label.textContent.trim() : "", outline: el ? getComputedStyle(el).outlineStyle : "" };
  });
  let f = await focused();
  for (let i = 0; i < 40 && f.label !== "Filter clusters"; i++) {
    await page.keyboard.press("Tab");
    f = await focused();
  }
  assert(f.label === "Filter clusters", "Tab reaches the cluster filter");
  assert(f.outline !== "none", "visible focus on the filter: " + f.outline);
  const shown = () => page.locator("#cluster-select option:not([hidden])").evaluateAll((os) => os.map((o) => o.value));
  await page.keyboard.type("xyz");
  let visible = await shown();
  assert(visible.join() === "all", "no match hides all but the current selection: " + visible);
  for (let i = 0; i < 3; i++) await page.keyboard.press("Backspace");
  await page.keyboard.type("manag");
  visible = await shown();
  assert(visible.includes("cluster"), "typing shows the match: " + visible);
  await page.keyboard.press("Enter");
  await page.waitForURL((u) => u.searchParams.get("cluster") === "cluster");
  f = await focused();
  for (let i = 0; i < 40 && f.label !== "Cluster"; i++) {
    await page.keyboard.press("Tab");
    f = await focused();
  }
  assert(f.label === "Cluster", "Tab reaches the Cluster selector");
  console.log("ok keyboard cluster selector");

  // --- Dark theme follows prefers-color-scheme.
  const bg = async () => page.evaluate(() => getComputedStyle(document.body).backgroundColor);
  await page.emulateMedia({ colorScheme: "light" });
  const light = await bg();
  await page.emulateMedia({ colorScheme: "dark" });
  const dark = await bg();
  assert(light === "rgb(246, 247, 249)" && dark === "rgb(17, 20, 26)", `themes: light ${light}, dark ${dark}`);
  await shot(page, "overview-dark");
  await page.emulateMedia({ colorScheme: "light" });
  console.log("ok dark theme");

  // --- Times are shown in local time, with UTC in the title (the management plane's own
  // audit trail has rows: the sign-ins above).
  let stamp = null;
  for (let i = 0; i < 20 && !stamp; i++) {
    await page.goto(URL_ + "/ui/logs/audit?cluster=cluster&range=15m");
    const t = page.locator("table time[datetime]").first();
    if (await t.count()) stamp = { dt: await t.getAttribute("datetime"), title: await t.getAttribute("title"), text: (await t.innerText()).trim() };
    else await sleep(500);
  }
  assert(stamp, "the audit page shows timed rows");
  assert(stamp.title === "UTC: " + stamp.dt && /Z$|\+00:00$/.test(stamp.dt), "UTC on hover: " + JSON.stringify(stamp));
  const d = new Date(stamp.dt);
  const local = d.toLocaleTimeString("en-GB", { timeZone: "Asia/Kolkata", hour: "2-digit", minute: "2-digit", second: "2-digit" });
  const utc = d.toLocaleTimeString("en-GB", { timeZone: "UTC", hour: "2-digit", minute: "2-digit", second: "2-digit" });
  assert(stamp.text.includes(local) && !stamp.text.includes(utc), `local time shown: ${stamp.text} (local ${local}, UTC ${utc})`);
  console.log("ok local times");

}, {
  // Not UTC, so that local time and UTC differ visibly (+05:30, no daylight saving).
  timezoneId: "Asia/Kolkata",
  locale: "en-GB",
});

// What every browser spec needs: its environment, a fresh Debian chromium, assertions and
// signing in. Specs import it; tests/common/mod.rs `run_browser_spec` sets UI_URL, UI_TOKEN,
// UI_CHROMIUM and UI_SCREENSHOTS.
import { chromium } from "playwright-core";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** An environment variable the spec cannot run without. */
export const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`environment variable ${k} is required`);
  return v;
};

/** Throws with `msg` unless `cond`. */
export function assert(cond, msg) {
  if (!cond) throw new Error("assertion failed: " + msg);
}

/** Signs in with `token` on the sign-in form the UI redirects `next` to. */
export async function signIn(page, url, token, next) {
  await page.goto(url + next);
  assert(page.url().includes("/ui/sign-in"), "an unsigned request goes to sign-in: " + page.url());
  await page.getByLabel("Token").fill(token);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.waitForURL((u) => !u.pathname.startsWith("/ui/sign-in"));
}

/**
 * Runs `body(context, page, consoleErrors)` in a fresh headless chromium profile, with the
 * flags this machine needs (`options` adds launch options: time zone, locale); a failure is printed with a screenshot (`<name>-failure.png`)
 * and sets the exit code. The profile is removed afterwards.
 */
export async function withBrowser(name, body, options = {}) {
  const consoleErrors = [];
  const userDataDir = mkdtempSync(join(tmpdir(), `cattery-${name}-chromium-`));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: env("UI_CHROMIUM"),
    headless: true,
    ignoreHTTPSErrors: true,
    viewport: { width: 1440, height: 900 },
    args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
      "--disable-sync", "--no-first-run", "--disable-quic"],
    ...options,
  });
  context.setDefaultTimeout(20000);
  try {
    const page = context.pages()[0] || (await context.newPage());
    page.on("console", (m) => { if (m.type() === "error") consoleErrors.push(m.text()); });
    page.on("pageerror", (e) => consoleErrors.push(String(e)));
    await body(context, page, consoleErrors);
    const cspErrors = consoleErrors.filter((e) => /Content Security Policy|Refused to/.test(e));
    assert(cspErrors.length === 0, "no CSP violations: " + cspErrors.join("\n"));
  } catch (e) {
    console.log("FAILED: " + (e && e.stack ? e.stack : e));
    try {
      await context.pages()[0].screenshot({ path: join(env("UI_SCREENSHOTS"), `${name}-failure.png`), fullPage: true });
    } catch {}
    if (consoleErrors.length) console.log("browser console errors:\n" + consoleErrors.join("\n"));
    process.exitCode = 1;
  } finally {
    await context.close();
    rmSync(userDataDir, { recursive: true, force: true });
  }
}

// A small OpenID Connect issuer for the SSO browser test (tests/ui_sso.rs): an external
// system to Cattery, written independently of its code. It implements the authorization
// code flow for real: discovery, a JWK set, an authorization endpoint with a login form
// (Approve / Deny), and a token endpoint that checks the client, the redirect URI, the
// PKCE code_verifier against the S256 challenge, and that a code is used once. ID tokens
// are ES256 JWTs signed with a P-256 key generated at start. With "Offline access" ticked
// on the login form the token answer carries a refresh token; the `refresh_token` grant
// rotates it (the old one is used up). `revocation_endpoint` (RFC 7009) revokes one, and
// `end_session_endpoint` (RP-initiated logout) checks `id_token_hint`, `client_id` and
// `post_logout_redirect_uri` and sends the browser back there. `GET /test/state` tells
// the spec what happened (refresh grants, revocations, logouts; never a token).
//
// Usage: node oidc-issuer.mjs CLIENT_ID REDIRECT_URI
// Prints one line `{"issuer":"http://127.0.0.1:PORT"}` when listening.
import { createServer } from "node:http";
import { createHash, generateKeyPairSync, randomBytes, sign, verify } from "node:crypto";

const [clientId, redirectUri] = process.argv.slice(2);
if (!clientId || !redirectUri) {
  console.error("usage: node oidc-issuer.mjs CLIENT_ID REDIRECT_URI");
  process.exit(2);
}
const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
const kid = randomBytes(8).toString("hex");
const jwk = { ...publicKey.export({ format: "jwk" }), kid, alg: "ES256", use: "sig" };
const codes = new Map(); // code -> grant
const refreshTokens = new Map(); // refresh token -> { grant, state: "active" | "rotated" | "revoked" }
const events = { refreshGrants: [], revocations: [], logouts: [] };
let issuer = "";
// Where Cattery asks to be sent after signing out here: its sign-in page.
const postLogout = new URL(redirectUri).origin + "/ui/sign-in";

const b64u = (buf) => Buffer.from(buf).toString("base64url");
const esc = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function idToken(grant) {
  const now = Math.floor(Date.now() / 1000);
  const header = b64u(JSON.stringify({ alg: "ES256", typ: "JWT", kid }));
  const claims = {
    iss: issuer, sub: grant.user, aud: clientId, iat: now, exp: now + grant.lifetime,
    nonce: grant.nonce, groups: grant.groups,
  };
  const payload = b64u(JSON.stringify(claims));
  const sig = sign("sha256", Buffer.from(`${header}.${payload}`), { key: privateKey, dsaEncoding: "ieee-p1363" });
  return `${header}.${payload}.${b64u(sig)}`;
}

function newRefreshToken(grant) {
  const t = b64u(randomBytes(24));
  refreshTokens.set(t, { grant, state: "active" });
  return t;
}

// The claims of one of this issuer's ID tokens, or null when it is not one (bad signature).
function ownIdToken(jwt) {
  const [h, p, sig] = String(jwt || "").split(".");
  if (!h || !p || !sig) return null;
  const ok = verify("sha256", Buffer.from(`${h}.${p}`), { key: publicKey, dsaEncoding: "ieee-p1363" }, Buffer.from(sig, "base64url"));
  return ok ? JSON.parse(Buffer.from(p, "base64url").toString()) : null;
}

function clientOf(req, p) {
  const basic = (req.headers.authorization || "").match(/^Basic (.+)$/);
  if (basic) return decodeURIComponent(Buffer.from(basic[1], "base64").toString().split(":")[0]);
  return p.get("client_id");
}

function json(res, status, body) {
  res.writeHead(status, { "content-type": "application/json", "cache-control": "no-store" });
  res.end(JSON.stringify(body));
}
function redirect(res, params) {
  const u = new URL(redirectUri);
  for (const [k, v] of Object.entries(params)) if (v !== undefined) u.searchParams.set(k, v);
  res.writeHead(302, { location: u.toString() });
  res.end();
}
async function body(req) {
  const chunks = [];
  let n = 0;
  for await (const c of req) {
    n += c.length;
    if (n > 65536) throw new Error("body too large");
    chunks.push(c);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString());
}

// Checks an authorization request; returns an error text or null.
function checkAuthorize(p) {
  if (p.get("client_id") !== clientId) return `unknown client_id ${p.get("client_id")}`;
  if (p.get("redirect_uri") !== redirectUri) return `redirect_uri ${p.get("redirect_uri")} is not registered`;
  if (p.get("response_type") !== "code") return "response_type must be code";
  if (!(p.get("scope") || "").split(" ").includes("openid")) return "scope must include openid";
  if (p.get("code_challenge_method") !== "S256" || !p.get("code_challenge")) return "PKCE S256 is required";
  if (!p.get("state") || !p.get("nonce")) return "state and nonce are required";
  return null;
}

const server = createServer(async (req, res) => {
  try {
    const url = new URL(req.url, issuer);
    if (req.method === "GET" && url.pathname === "/.well-known/openid-configuration") {
      return json(res, 200, {
        issuer, authorization_endpoint: `${issuer}/authorize`, token_endpoint: `${issuer}/token`,
        jwks_uri: `${issuer}/jwks`, response_types_supported: ["code"], subject_types_supported: ["public"],
        id_token_signing_alg_values_supported: ["ES256"], code_challenge_methods_supported: ["S256"],
        grant_types_supported: ["authorization_code", "refresh_token"],
        end_session_endpoint: `${issuer}/logout`, revocation_endpoint: `${issuer}/revoke`,
      });
    }
    if (req.method === "GET" && url.pathname === "/jwks") return json(res, 200, { keys: [jwk] });
    if (req.method === "GET" && url.pathname === "/authorize") {
      const p = url.searchParams;
      const bad = checkAuthorize(p);
      if (bad) {
        res.writeHead(400, { "content-type": "text/plain" });
        return res.end(`invalid authorization request: ${bad}`);
      }
      const hidden = ["client_id", "redirect_uri", "state", "nonce", "code_challenge", "scope"]
        .map((k) => `<input type="hidden" name="${k}" value="${esc(p.get(k))}">`).join("");
      res.writeHead(200, { "content-type": "text/html; charset=utf-8" });
      return res.end(`<!doctype html><html lang="en"><head><title>Test issuer sign-in</title></head><body>
<h1>Test issuer</h1><form method="post" action="/authorize">${hidden}
<label>Username <input name="username" value="carol"></label>
<label>Groups <input name="groups" value="sso-admins"></label>
<label>Lifetime <input name="lifetime" value="3600"></label>
<label><input type="checkbox" name="offline" value="1"> Offline access</label>
<button name="decision" value="approve">Approve</button>
<button name="decision" value="deny">Deny</button></form></body></html>`);
    }
    if (req.method === "POST" && url.pathname === "/authorize") {
      const p = await body(req);
      p.set("response_type", "code");
      p.set("code_challenge_method", "S256");
      const bad = checkAuthorize(p);
      if (bad) {
        res.writeHead(400, { "content-type": "text/plain" });
        return res.end(`invalid authorization request: ${bad}`);
      }
      if (p.get("decision") !== "approve") {
        return redirect(res, { error: "access_denied", error_description: "The user denied the request", state: p.get("state") });
      }
      const code = b64u(randomBytes(24));
      codes.set(code, {
        challenge: p.get("code_challenge"), nonce: p.get("nonce"), user: p.get("username"),
        groups: (p.get("groups") || "").split(",").filter(Boolean),
        lifetime: Math.max(1, parseInt(p.get("lifetime") || "3600", 10)), used: false, created: Date.now(),
        offline: p.get("offline") === "1",
      });
      return redirect(res, { code, state: p.get("state") });
    }
    if (req.method === "POST" && url.pathname === "/token") {
      const p = await body(req);
      const client = clientOf(req, p);
      const fail = (error, error_description) => json(res, 400, { error, error_description });
      const grantType = p.get("grant_type");
      if (grantType !== "authorization_code" && grantType !== "refresh_token") {
        return fail("unsupported_grant_type", "only authorization_code and refresh_token");
      }
      if (client !== clientId) return fail("invalid_client", `unknown client ${client}`);
      if (grantType === "refresh_token") {
        const rt = refreshTokens.get(p.get("refresh_token") || "");
        if (!rt) return fail("invalid_grant", "unknown refresh token");
        if (rt.state !== "active") return fail("invalid_grant", `the refresh token was ${rt.state}`);
        rt.state = "rotated";
        // A refreshed ID token carries no nonce (OpenID Connect Core 12.2).
        const grant = { ...rt.grant, nonce: undefined };
        events.refreshGrants.push({ user: grant.user, at: Date.now() });
        return json(res, 200, {
          access_token: b64u(randomBytes(24)), token_type: "Bearer", expires_in: grant.lifetime,
          id_token: idToken(grant), refresh_token: newRefreshToken(grant),
        });
      }
      const grant = codes.get(p.get("code") || "");
      if (!grant) return fail("invalid_grant", "unknown authorization code");
      if (grant.used) return fail("invalid_grant", "the authorization code was already used");
      grant.used = true;
      if (Date.now() - grant.created > 60000) return fail("invalid_grant", "the authorization code expired");
      if (p.get("redirect_uri") !== redirectUri) return fail("invalid_grant", "redirect_uri differs from the authorization request's");
      const verifier = p.get("code_verifier") || "";
      if (!/^[A-Za-z0-9\-._~]{43,128}$/.test(verifier)) return fail("invalid_grant", "code_verifier missing or malformed");
      const challenge = b64u(createHash("sha256").update(verifier).digest());
      if (challenge !== grant.challenge) return fail("invalid_grant", "code_verifier does not match the code_challenge");
      const answer = {
        access_token: b64u(randomBytes(24)), token_type: "Bearer", expires_in: grant.lifetime, id_token: idToken(grant),
      };
      if (grant.offline) answer.refresh_token = newRefreshToken(grant);
      return json(res, 200, answer);
    }
    // RFC 7009: the answer is 200 whether or not the token was known (section 2.2).
    if (req.method === "POST" && url.pathname === "/revoke") {
      const p = await body(req);
      const client = clientOf(req, p);
      if (client !== clientId) return json(res, 401, { error: "invalid_client", error_description: `unknown client ${client}` });
      const rt = refreshTokens.get(p.get("token") || "");
      events.revocations.push({ user: rt ? rt.grant.user : null, hint: p.get("token_type_hint"), was: rt ? rt.state : "unknown" });
      if (rt) rt.state = "revoked";
      res.writeHead(200, { "cache-control": "no-store" });
      return res.end();
    }
    if (req.method === "GET" && url.pathname === "/logout") {
      const p = url.searchParams;
      const claims = ownIdToken(p.get("id_token_hint"));
      const bad = !claims ? "id_token_hint is not an ID token of this issuer"
        : p.get("client_id") !== clientId ? `unknown client_id ${p.get("client_id")}`
          : p.get("post_logout_redirect_uri") !== postLogout ? `post_logout_redirect_uri ${p.get("post_logout_redirect_uri")} is not registered`
            : null;
      if (bad) {
        res.writeHead(400, { "content-type": "text/plain" });
        return res.end(`invalid logout request: ${bad}`);
      }
      events.logouts.push({ user: claims.sub });
      res.writeHead(302, { location: postLogout });
      return res.end();
    }
    if (req.method === "GET" && url.pathname === "/test/state") {
      const active = {};
      for (const rt of refreshTokens.values()) if (rt.state === "active") active[rt.grant.user] = (active[rt.grant.user] || 0) + 1;
      return json(res, 200, { ...events, activeRefreshTokens: active });
    }
    res.writeHead(404, { "content-type": "text/plain" });
    res.end("not found");
  } catch (e) {
    res.writeHead(500, { "content-type": "text/plain" });
    res.end(String(e));
  }
});
server.listen(0, "127.0.0.1", () => {
  issuer = `http://127.0.0.1:${server.address().port}`;
  console.log(JSON.stringify({ issuer }));
});

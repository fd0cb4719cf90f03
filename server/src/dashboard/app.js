// The Faramesh dashboard. Plain JavaScript, no build step, no other host. Everything an agent
// supplied is put on the page with textContent, never as HTML.
"use strict";

const PAGE = 50;
const state = {
  csrf: null,
  // Paging by cursor: the cursors of the pages before this one (newest first), and the next.
  cursors: [],
  cursor: null,
  next: null,
  open: null,
  source: null,
  refresh: null,
  focus: null,
  selected: new Set(),
};

const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = String(v);
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

async function api(path, options = {}) {
  const method = options.method || "GET";
  const headers = { Accept: "application/json" };
  if (options.body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && state.csrf) headers["X-CSRF-Token"] = state.csrf;
  const resp = await fetch(path, {
    method,
    headers,
    credentials: "same-origin",
    body: options.body === undefined ? undefined : JSON.stringify(options.body),
  });
  let data = null;
  try {
    data = await resp.json();
  } catch (_) {
    data = null;
  }
  if (!resp.ok) {
    const message = (data && data.error && data.error.message) || `HTTP ${resp.status}`;
    const err = new Error(message);
    err.status = resp.status;
    throw err;
  }
  return data;
}

// ---- theme -------------------------------------------------------------------------------

function applyTheme(theme) {
  document.documentElement.dataset.theme = theme;
}

function initTheme() {
  let theme = null;
  try {
    theme = localStorage.getItem("faramesh-theme");
  } catch (_) {
    theme = null;
  }
  if (theme !== "light" && theme !== "dark") {
    theme = window.matchMedia && window.matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light";
  }
  applyTheme(theme);
  $("theme").addEventListener("click", () => {
    const next = document.documentElement.dataset.theme === "dark" ? "light" : "dark";
    applyTheme(next);
    try {
      localStorage.setItem("faramesh-theme", next);
    } catch (_) {
      /* private mode: the choice lasts this page */
    }
  });
}

// ---- session -----------------------------------------------------------------------------

async function signIn(body) {
  const session = await api("/v1/session", { method: "POST", body });
  state.csrf = session.csrf;
  return session;
}

async function boot() {
  initTheme();
  const hash = new URLSearchParams(location.hash.slice(1));
  const login = hash.get("login");
  // `#action=<id>` (the MCP gateway's approval link) opens that action's drawer.
  state.focus = hash.get("action");
  if (login) {
    history.replaceState(null, "", location.pathname + location.search);
    try {
      await signIn({ login });
      return start();
    } catch (e) {
      showLogin(e.message);
      return;
    }
  }
  try {
    const session = await api("/v1/session");
    state.csrf = session.csrf;
    start();
  } catch (_) {
    showLogin("");
  }
}

function showLogin(message) {
  $("login").hidden = false;
  $("main").hidden = true;
  $("login-error").textContent = message || "";
  $("login-form").onsubmit = async (ev) => {
    ev.preventDefault();
    try {
      await signIn({ token: $("token").value });
      $("token").value = "";
      $("login").hidden = true;
      start();
    } catch (e) {
      $("login-error").textContent = e.message;
    }
  };
}

// ---- passkeys -----------------------------------------------------------------------------------

const b64url = (buf) =>
  btoa(String.fromCharCode(...new Uint8Array(buf))).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
const fromB64url = (s) => Uint8Array.from(atob(s.replace(/-/g, "+").replace(/_/g, "/")), (c) => c.charCodeAt(0));

// Makes a passkey (ES256) on this device and shows the policy lines that list it.
async function registerPasskey() {
  const name = $("passkey-name").value.trim();
  $("passkey-error").textContent = "";
  if (!/^[A-Za-z0-9._@-]{1,64}$/.test(name)) {
    $("passkey-error").textContent = "an approver name is 1 to 64 letters, digits or ._@-";
    return;
  }
  try {
    const cred = await navigator.credentials.create({
      publicKey: {
        rp: { name: "Faramesh", id: location.hostname },
        user: { id: crypto.getRandomValues(new Uint8Array(16)), name, displayName: name },
        challenge: crypto.getRandomValues(new Uint8Array(32)),
        pubKeyCredParams: [{ type: "public-key", alg: -7 }],
        authenticatorSelection: { residentKey: "preferred", userVerification: "required" },
        attestation: "none",
      },
    });
    const spki = cred.response.getPublicKey();
    if (!spki || cred.response.getPublicKeyAlgorithm() !== -7) throw new Error("this authenticator did not make an ES256 key");
    const snippet =
      `approvals:\n  approvers:\n    - { name: ${name}, passkey: { id: "${b64url(cred.rawId)}", public_key: "${btoa(String.fromCharCode(...new Uint8Array(spki)))}" } }\n`;
    $("passkey-snippet").textContent = snippet;
    $("passkey-snippet").hidden = false;
    localStorage.setItem("faramesh-approver", name);
  } catch (e) {
    $("passkey-error").textContent = `no passkey made: ${e.message}`;
  }
}

// Approves or denies with a passkey: the daemon's statement for this call, signed by the
// authenticator (its challenge is the statement's SHA-256), handed in with the assertion.
async function passkeyDecision(action, approve, name) {
  const st = await api(`/v1/actions/${encodeURIComponent(action.id)}/approval-statement`, {
    method: "POST",
    body: { decision: approve ? "approve" : "deny", approver: name },
  });
  if (!st.passkey) throw new Error(`the policy lists ${name} with an SSH key, not a passkey: sign with faramesh approve --sign`);
  const got = await navigator.credentials.get({
    publicKey: {
      challenge: fromB64url(st.passkey.challenge),
      rpId: location.hostname,
      allowCredentials: [{ type: "public-key", id: fromB64url(st.passkey.credential_id) }],
      userVerification: "required",
    },
  });
  localStorage.setItem("faramesh-approver", name);
  return api(`/v1/actions/${encodeURIComponent(action.id)}/approval`, {
    method: "POST",
    body: {
      approve,
      statement: st.statement,
      passkey: {
        credential_id: b64url(got.rawId),
        authenticator_data: b64url(got.response.authenticatorData),
        client_data_json: b64url(got.response.clientDataJSON),
        signature: b64url(got.response.signature),
      },
    },
  });
}

function start() {
  $("login").hidden = true;
  $("main").hidden = false;
  $("signout").hidden = false;
  if (window.PublicKeyCredential) {
    $("passkey-open").hidden = false;
    $("passkey-open").onclick = () => {
      $("passkey").hidden = !$("passkey").hidden;
      $("passkey-name").value = localStorage.getItem("faramesh-approver") || "";
    };
    $("passkey-register").onclick = registerPasskey;
  }
  $("signout").onclick = async () => {
    try {
      await api("/v1/session", { method: "DELETE" });
    } finally {
      location.reload();
    }
  };
  for (const id of ["f-status", "f-agent", "f-tool", "f-q"]) {
    $(id).addEventListener(id === "f-status" ? "change" : "input", () => {
      state.cursors = [];
      state.cursor = null;
      scheduleRefresh(200);
    });
  }
  $("newer").onclick = () => {
    state.cursor = state.cursors.pop() || null;
    loadPage();
  };
  $("older").onclick = () => {
    if (state.next !== null) {
      state.cursors.push(state.cursor);
      state.cursor = state.next;
      loadPage();
    }
  };
  $("bulk-approve").onclick = () => decideMany([...state.selected], true);
  $("bulk-deny").onclick = () => decideMany([...state.selected], false);
  $("queue-all").onchange = (ev) => {
    for (const box of document.querySelectorAll("#queue-rows input.pick")) {
      box.checked = ev.target.checked;
      const id = box.closest("tr").dataset.id;
      if (ev.target.checked) state.selected.add(id);
      else state.selected.delete(id);
    }
    syncBulk();
  };
  $("d-close").onclick = closeDrawer;
  document.addEventListener("keydown", (ev) => {
    if (ev.key === "Escape") closeDrawer();
  });
  $("ov-window").onchange = () => loadStats();
  loadOverview();
  loadStats();
  loadPage();
  loadQueue();
  loadGrants();
  listen();
  if (state.focus) openDrawer(state.focus);
}

// ---- header ------------------------------------------------------------------------------

async function loadOverview() {
  try {
    const o = await api("/v1/overview");
    const p = o.policy || {};
    $("policy-path").textContent = p.path || "?";
    $("policy-hash").textContent = p.policy_hash ? p.policy_hash.slice(0, 12) : "";
    $("policy-hash").title = p.policy_hash || "";
    $("policy-loaded").textContent = p.loaded_at ? `loaded ${fmtTime(p.loaded_at)}` : "";
    $("demo-badge").hidden = o.demo !== true;
    const notes = [o.notice, o.anonymous_agents ? "agents may call without a token (loopback)" : null].filter(Boolean);
    $("mode").hidden = notes.length === 0;
    $("mode-text").textContent = notes.join("; ");
    // A policy from signed bundles: which one, and loudly when it is stale or missing.
    const b = p.bundle;
    $("bundle").hidden = !b;
    if (b) {
      $("bundle-label").className = b.warning ? "label bad" : "label";
      $("bundle-text").className = b.warning ? "bad" : "";
      $("bundle-text").textContent = b.warning
        ? b.warning
        : `${b.serial} (${(b.digest || "").slice(0, 12)}) until ${fmtTime(b.expires_at)}`;
      $("bundle-text").title = b.digest || "";
    }
    $("policy-error").hidden = !p.last_error;
    $("policy-error-text").textContent = p.last_error || "";
    // The kill switch: every call (of some agents, or all) is denied until an approver lifts it.
    const kill = o.kill || {};
    const killed = (kill.switches || []).map((k) =>
      `${k.agent_id ? `agent ${k.agent_id}` : "every agent"} since ${fmtTime(k.since)}${k.reason ? `: ${k.reason}` : ""}`);
    if (kill.file_present) killed.push(`the kill file ${kill.file} is present`);
    $("kill-switch").hidden = killed.length === 0;
    $("kill-switch-text").textContent = killed.length ? `every call denied for ${killed.join("; ")}` : "";
    // A witness that refuses the log (it saw a larger one, or one this log is not consistent with).
    const alarms = (o.witnesses || []).filter((w) => w.alarm);
    $("witness-alarm").hidden = alarms.length === 0;
    $("witness-alarm-text").textContent = alarms.map((w) => `${w.name}: ${w.alarm.message}`).join("; ");
    // Deliveries that failed, or that have waited over a minute, are said in the header.
    const n = o.notifications || {};
    const late = (n.waiting || 0) > 0 && (n.oldest_seconds || 0) >= 60;
    const trouble = (n.failed || 0) > 0 || late;
    $("notify-trouble").hidden = !trouble;
    $("notify-trouble-text").textContent = trouble
      ? [
          n.failed ? `${n.failed} not delivered` : null,
          late ? `${n.waiting} waiting, the oldest ${Math.round(n.oldest_seconds / 60)} min` : null,
          n.last_error ? `last error: ${n.last_error}` : null,
        ]
          .filter(Boolean)
          .join("; ")
      : "";
    const log = o.log || {};
    const integrity = $("log-integrity");
    integrity.className = log.checkpoint_verified ? "good" : "bad";
    integrity.textContent = log.checkpoint_verified
      ? `✓ signed checkpoint verified at entry ${log.checkpoint_size} (${log.size} entries)`
      : "✗ the latest checkpoint does not verify";
    const c = o.counts || {};
    $("count-permit").textContent = `${c.permit || 0} permit`;
    $("count-deny").textContent = `${c.deny || 0} deny`;
    $("count-defer").textContent = `${c.defer || 0} defer`;
  } catch (e) {
    $("log-integrity").textContent = e.message;
  }
}

// ---- table -------------------------------------------------------------------------------

function query() {
  const params = new URLSearchParams({ limit: String(PAGE) });
  if (state.cursor) params.set("cursor", state.cursor);
  const add = (k, id) => {
    const v = $(id).value.trim();
    if (v) params.set(k, v);
  };
  add("status", "f-status");
  add("agent_id", "f-agent");
  add("tool", "f-tool");
  add("q", "f-q");
  return params.toString();
}

function fmtTime(ts) {
  if (!ts) return "";
  const d = new Date(ts);
  if (Number.isNaN(d.getTime())) return String(ts);
  return d.toLocaleString(undefined, { hour12: false });
}

function badge(kind, text) {
  return el("span", { class: `badge ${kind}`, text });
}

function effectBadge(effect) {
  return badge(String(effect || "").toLowerCase(), effect || "?");
}

function statusBadge(status) {
  return badge(`st-${status}`, String(status || "").replace("_", " "));
}

async function loadPage() {
  let data;
  try {
    data = await api(`/v1/actions?${query()}`);
  } catch (e) {
    if (e.status === 401) return showLogin("Your session ended: sign in again.");
    $("range").textContent = e.message;
    return;
  }
  const rows = $("rows");
  rows.replaceChildren(
    ...data.actions.map((a) =>
      el(
        "tr",
        {
          class: a.id === state.open ? "row selected" : "row",
          "data-id": a.id,
          tabindex: "0",
          onclick: () => openDrawer(a.id),
          onkeydown: (ev) => {
            if (ev.key === "Enter") openDrawer(a.id);
          },
        },
        el("td", { class: "time", text: fmtTime(a.created_at) }),
        el("td", { class: "mono", text: a.agent_id }),
        el("td", { class: "mono" }, el("span", { class: "tool", text: a.tool }), el("span", { class: "dim", text: ` / ${a.operation}` })),
        el("td", { class: "mono small summary", text: a.summary || "", title: a.summary || "" }),
        el("td", {}, effectBadge(a.effect)),
        el("td", { class: "mono small", text: a.reason_code }),
        el("td", {}, badge(`risk-${a.risk_level}`, a.risk_level || "")),
        el("td", {}, statusBadge(a.status)),
      ),
    ),
  );
  state.next = data.next_cursor || null;
  $("empty").hidden = data.actions.length > 0;
  $("newer").disabled = state.cursors.length === 0;
  $("older").disabled = state.next === null;
  const first = state.cursors.length * PAGE;
  $("range").textContent = data.actions.length ? `${first + 1}–${first + data.actions.length}` : "";
}

// ---- the overview: decisions over time, top agents and tools, rule hits ----------------------

const SVG = "http://www.w3.org/2000/svg";

function svg(tag, attrs, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  for (const c of children) node.append(c);
  return node;
}

function chart(buckets, bucketSeconds) {
  const W = 640;
  const H = 110;
  const n = Math.max(1, buckets.length);
  const max = Math.max(1, ...buckets.map((b) => b.PERMIT + b.DENY + b.DEFER));
  const bw = W / n;
  const bars = [];
  buckets.forEach((b, i) => {
    let y = H;
    for (const effect of ["PERMIT", "DENY", "DEFER"]) {
      const h = (b[effect] / max) * (H - 10);
      if (h > 0) {
        y -= h;
        bars.push(
          svg(
            "rect",
            { x: i * bw + 0.5, y, width: Math.max(1, bw - 1), height: h, class: `bar ${effect.toLowerCase()}` },
            svg("title", {}, document.createTextNode(`${fmtTime(b.start)}: ${b[effect]} ${effect}`)),
          ),
        );
      }
    }
  });
  const axis = svg("line", { x1: 0, y1: H, x2: W, y2: H, class: "axis" });
  const top = svg("text", { x: 2, y: 10, class: "tick" }, document.createTextNode(`${max} per ${bucketSeconds / 60} min`));
  return svg("svg", { viewBox: `0 0 ${W} ${H + 2}`, class: "ov-svg", role: "img", "aria-label": "decisions over time by effect" }, axis, ...bars, top);
}

async function loadStats() {
  let data;
  try {
    data = await api(`/v1/stats?window=${encodeURIComponent($("ov-window").value)}`);
  } catch (_) {
    return;
  }
  $("ov-chart").replaceChildren(chart(data.buckets, data.bucket_seconds));
  $("ov-total").textContent = `${data.decisions} ${data.decisions === 1 ? "decision" : "decisions"}${data.truncated ? " (the newest, capped)" : ""}`;
  $("ov-caption").textContent = data.window === "hour" ? "each bar a minute" : "each bar 15 minutes";
  const list = (id, items) =>
    $(id).replaceChildren(
      ...(items.length ? items : [{ name: "none yet", count: "" }]).map((t) =>
        el("li", {}, el("span", { class: "mono", text: t.name }), el("span", { class: "dim", text: t.count === "" ? "" : `  ${t.count}` })),
      ),
    );
  list("ov-agents", data.agents);
  list("ov-tools", data.tools);
  $("ov-rules").replaceChildren(
    ...data.rules.map((r) =>
      el(
        "tr",
        { class: r.shadow ? "rule shadow" : r.hits === 0 ? "rule never" : "rule" },
        el("td", { class: "mono", text: r.id }),
        el("td", {}, badge(String(r.effect).toLowerCase(), r.effect), r.shadow ? el("span", { class: "pill shadow", text: "shadow" }) : null),
        el("td", {
          class: "hits",
          text: r.shadow
            ? `would have changed ${r.shadow_hits} ${r.shadow_hits === 1 ? "call" : "calls"}`
            : r.hits === 0 ? "never fired" : String(r.hits),
        }),
        el("td", { class: "mono dim small", text: r.rule_ref }),
      ),
    ),
  );
}

// ---- the approval queue and grants ---------------------------------------------------------

function ago(ts) {
  const s = Math.max(0, Math.round((Date.now() - new Date(ts).getTime()) / 1000));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

function until(ts) {
  if (!ts) return "";
  const s = Math.round((new Date(ts).getTime() - Date.now()) / 1000);
  if (s <= 0) return "expired";
  return s < 60 ? `in ${s} s` : `in ${Math.ceil(s / 60)} min`;
}

async function decideMany(ids, approve, extra = {}) {
  const reason = $("bulk-reason").value.trim();
  $("queue-error").textContent = "";
  const failed = [];
  // One request per action: each decision is recorded on its own.
  for (const id of ids) {
    const body = { approve, ...extra };
    if (reason) body.reason = reason;
    try {
      await api(`/v1/actions/${encodeURIComponent(id)}/approval`, { method: "POST", body });
      state.selected.delete(id);
    } catch (e) {
      failed.push(`${id.slice(0, 8)}: ${e.message}`);
    }
  }
  if (failed.length) $("queue-error").textContent = failed.join("; ");
  scheduleRefresh(0);
}

function syncBulk() {
  const n = state.selected.size;
  $("bulk-approve").disabled = n === 0;
  $("bulk-deny").disabled = n === 0;
  $("bulk-approve").textContent = n ? `Approve ${n} selected` : "Approve selected";
  $("bulk-deny").textContent = n ? `Deny ${n} selected` : "Deny selected";
}

async function loadQueue() {
  let data;
  try {
    data = await api("/v1/actions?status=pending_approval&limit=100");
  } catch (_) {
    return;
  }
  const pending = data.actions.slice().reverse(); // oldest first: the longest wait on top
  const ids = new Set(pending.map((a) => a.id));
  for (const id of [...state.selected]) if (!ids.has(id)) state.selected.delete(id);
  $("queue").hidden = pending.length === 0;
  $("queue-count").textContent = String(pending.length);
  $("queue-rows").replaceChildren(
    ...pending.map((a) =>
      el(
        "tr",
        { class: "queue-row", "data-id": a.id },
        el(
          "td",
          {},
          el("input", {
            type: "checkbox",
            class: "pick",
            "aria-label": `select ${a.id}`,
            checked: state.selected.has(a.id),
            onchange: (ev) => {
              if (ev.target.checked) state.selected.add(a.id);
              else state.selected.delete(a.id);
              syncBulk();
            },
          }),
        ),
        el("td", { class: "mono", text: a.agent_id }),
        el(
          "td",
          { class: "mono", onclick: () => openDrawer(a.id) },
          el("span", { class: "tool", text: `${a.tool} / ${a.operation}` }),
          el("span", { class: "dim small", text: a.summary ? `  ${a.summary}` : "" }),
        ),
        el(
          "td",
          { class: "mono small" },
          el("span", { text: a.rule_id || "" }),
          a.approvals
            ? el("span", { class: "pill defer signed-count", text: `${a.approvals.signed.length} of ${a.approvals.required} signed` })
            : null,
        ),
        el("td", { class: "age", text: ago(a.created_at) }),
        el("td", { class: "expires", text: until(a.approval_expires_at) }),
        el(
          "td",
          { class: "queue-actions" },
          el("button", { type: "button", class: "ok small", text: "Approve", onclick: () => decideMany([a.id], true) }),
          el("button", {
            type: "button",
            class: "ghost small grant",
            text: "Approve + 30 min",
            title:
              "approve, and let the caller that made this call (same uid or token, same session) make the same tool/operation call without asking for 30 minutes",
            onclick: () => decideMany([a.id], true, { grant_minutes: 30 }),
          }),
          el("button", { type: "button", class: "danger small", text: "Deny", onclick: () => decideMany([a.id], false) }),
        ),
      ),
    ),
  );
  $("queue-all").checked = pending.length > 0 && pending.every((a) => state.selected.has(a.id));
  syncBulk();
}

async function loadGrants() {
  let data;
  try {
    data = await api("/v1/grants");
  } catch (_) {
    return;
  }
  $("grants").hidden = data.grants.length === 0;
  $("grant-list").replaceChildren(
    ...data.grants.map((g) =>
      el(
        "li",
        { class: "grant-item" },
        el("span", { class: "mono", text: `${g.agent_id} → ${g.tool}/${g.operation}` }),
        el("span", { class: g.covers && g.covers.any_caller ? "warn covers" : "covers", text: ` for ${coversText(g.covers)}` }),
        el("span", {
          class: "dim",
          text: ` ${g.request_hash ? `only ${g.summary || "the same arguments"}` : "any arguments"}, ends ${until(g.expires_at)}`,
        }),
        el("button", {
          type: "button",
          class: "ghost small",
          text: "Revoke",
          onclick: async () => {
            await api(`/v1/grants/${encodeURIComponent(g.id)}`, { method: "DELETE" });
            scheduleRefresh(0);
          },
        }),
      ),
    ),
  );
}

// Whom a grant covers: the caller of the approved call, or any caller when the approver
// widened it (shown as such).
function coversText(c) {
  if (!c) return "no one";
  let who = "no one";
  if (c.any_caller) who = "ANY caller";
  else if (c.uid !== undefined) who = `uid ${c.uid}`;
  else if (c.token !== undefined) who = `token ${c.token}`;
  return c.session_id ? `${who} in session ${c.session_id}` : who;
}

function scheduleRefresh(ms) {
  clearTimeout(state.refresh);
  state.refresh = setTimeout(() => {
    loadPage();
    loadQueue();
    loadGrants();
    loadStats();
    loadOverview();
    if (state.open) openDrawer(state.open, true);
  }, ms);
}

function listen() {
  if (state.source) state.source.close();
  const source = new EventSource("/v1/events");
  state.source = source;
  source.onopen = () => $("live").classList.add("on");
  source.onerror = () => $("live").classList.remove("on");
  source.onmessage = () => {
    // New entries matter for the queue, the first page (newest first) and an open drawer.
    scheduleRefresh(100);
  };
}

// ---- drawer ------------------------------------------------------------------------------

function closeDrawer() {
  state.open = null;
  $("drawer").hidden = true;
  for (const r of document.querySelectorAll("tr.selected")) r.classList.remove("selected");
}

function section(title, ...children) {
  return el("section", { class: "d-section" }, el("h3", { text: title }), ...children);
}

function kv(pairs) {
  const dl = el("dl", { class: "kv" });
  for (const [k, v] of pairs) {
    if (v === null || v === undefined || v === "") continue;
    dl.append(el("dt", { text: k }), el("dd", {}, v instanceof Node ? v : el("span", { class: "mono", text: String(v) })));
  }
  return dl;
}

function pre(value) {
  return el("pre", { class: "json", text: JSON.stringify(value === undefined ? null : value, null, 2) });
}

function copyable(command) {
  const button = el("button", { type: "button", class: "ghost small", text: "Copy" });
  button.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(command);
      button.textContent = "Copied";
    } catch (_) {
      button.textContent = "Select and copy";
    }
  });
  return el("div", { class: "cmd" }, el("code", { text: command }), button);
}

function shellQuote(s) {
  return `'${String(s).replace(/'/g, "'\\''")}'`;
}

function approvalNote(action, events) {
  const decided = events.filter((e) => ["approved", "denied", "expired"].includes(e.event_type));
  if (action.status === "pending_approval") return null;
  if (!decided.length) return null;
  const last = decided[decided.length - 1];
  const meta = last.meta || {};
  const by = meta.by || meta.decided_by;
  const who = by ? ` by ${describeCaller(by)}` : "";
  const why = meta.reason ? ` (${meta.reason})` : "";
  return el("p", {
    class: "note",
    text: `No approval buttons: the approval was ${last.event_type}${who} at ${fmtTime(last.created_at)}${why}.`,
  });
}

function describeCaller(c) {
  if (!c || typeof c !== "object") return String(c || "");
  if (c.token) return `${c.token} (${c.role || "token"})`;
  if (c.uid !== undefined) return `uid ${c.uid}, gid ${c.gid}, pid ${c.pid}`;
  return JSON.stringify(c);
}

function approvalForm(action) {
  const reason = el("input", { id: "d-reason", type: "text", placeholder: "reason (optional)", autocomplete: "off" });
  const message = el("p", { class: "error", role: "alert" });
  // A grant rides on an approval: the caller that made this call (its uid or token, and its
  // session) may then make the same tool/operation call (optionally with the same arguments) for
  // this long without asking; "any caller" widens it. Never with a denial.
  const grant = el(
    "select",
    { id: "d-grant", title: "after approving, allow this agent the same call without asking for…" },
    ...[
      ["", "no grant"],
      ["15", "15 min"],
      ["30", "30 min"],
      ["60", "1 hour"],
      ["480", "8 hours"],
    ].map(([value, text]) => el("option", { value, text })),
  );
  const sameArgs = el("input", { id: "d-grant-same", type: "checkbox" });
  const anyCaller = el("input", { id: "d-grant-any", type: "checkbox" });
  // Approve with edits: the arguments as JSON, changed here. The edited call is decided again
  // by the policy (a DENY refuses it); the agent runs it through the SDKs and the MCP gateway.
  const params = el("textarea", { id: "d-params", rows: "6", spellcheck: "false", "aria-label": "the call's arguments as JSON" });
  params.value = JSON.stringify(action.params ?? {}, null, 2);
  const decide = async (approve, edited) => {
    message.textContent = "";
    try {
      const body = { approve };
      if (reason.value.trim()) body.reason = reason.value.trim();
      if (edited !== undefined) {
        try {
          body.params = JSON.parse(params.value);
        } catch (e) {
          message.textContent = `The arguments are not JSON: ${e.message}`;
          return;
        }
        if (!body.params || typeof body.params !== "object" || Array.isArray(body.params)) {
          message.textContent = "The arguments must be a JSON object.";
          return;
        }
        const answer = await api(`/v1/actions/${encodeURIComponent(action.id)}/approval`, { method: "POST", body });
        if (answer && answer.status === "denied") {
          message.textContent = `Not approved: the policy denies the edited call (${(answer.edit && answer.edit.reason) || "see the timeline"}).`;
        }
        scheduleRefresh(0);
        return;
      }
      if (approve && grant.value) {
        body.grant_minutes = Number(grant.value);
        if (sameArgs.checked) body.grant_same_args = true;
        if (anyCaller.checked) body.grant_any_caller = true;
      }
      await api(`/v1/actions/${encodeURIComponent(action.id)}/approval`, { method: "POST", body });
      scheduleRefresh(0);
    } catch (e) {
      message.textContent = e.message;
      scheduleRefresh(0);
    }
  };
  // Several signed approvers: each signs with their own key, from the CLI; this page can deny.
  const several = action.approvals
    ? el("p", {
        id: "d-signed",
        class: "warn",
        text: `Needs ${action.approvals.required} approvers who each sign with their key: ${action.approvals.signed.length} of ${action.approvals.required} so far${action.approvals.signed.length ? ` (${action.approvals.signed.join(", ")})` : ""}. Sign with: faramesh approve ${action.approval_id} --sign (or faramesh fleet approve … --sign).`,
      })
    : null;
  // With a passkey: the approver's name (remembered here), then the authenticator signs.
  const pkName = el("input", {
    id: "d-passkey-name",
    type: "text",
    placeholder: "your approver name",
    autocomplete: "off",
    value: localStorage.getItem("faramesh-approver") || "",
  });
  const withPasskey = async (approve) => {
    message.textContent = "";
    try {
      const a = await passkeyDecision(action, approve, pkName.value.trim());
      const progress = a.approvals ? ` (${a.approvals.signed.length} of ${a.approvals.required} signed)` : "";
      message.className = "ok-text";
      message.textContent = `signed with your passkey: ${a.status}${progress}`;
      scheduleRefresh(0);
    } catch (e) {
      message.className = "error";
      message.textContent = e.message;
    }
  };
  const passkeyRow = window.PublicKeyCredential
    ? el(
        "div",
        { class: "passkey-row" },
        pkName,
        el("button", { type: "button", id: "d-passkey-approve", class: "ok", text: "Approve with passkey", onclick: () => withPasskey(true) }),
        el("button", { type: "button", id: "d-passkey-deny", class: "danger", text: "Deny with passkey", onclick: () => withPasskey(false) }),
      )
    : null;
  return el(
    "div",
    { class: "approve" },
    several,
    passkeyRow,
    reason,
    el("button", { type: "button", id: "d-approve", class: "ok", text: "Approve", disabled: !!action.approvals, onclick: () => decide(true) }),
    el("button", { type: "button", id: "d-deny", class: "danger", text: "Deny", onclick: () => decide(false) }),
    action.approvals ? null : el(
      "div",
      { class: "grant-opts" },
      el("label", { for: "d-grant", text: "and allow the same call for " }),
      grant,
      el("label", {}, sameArgs, " with the same arguments only"),
      el("label", { title: "by default a grant covers only the caller that made this call (its uid or token, and session)" }, anyCaller, " for any caller, not only this one"),
    ),
    action.approvals ? null : el(
      "details",
      { class: "edit-args", id: "d-edit" },
      el("summary", { text: "Approve with changed arguments…" }),
      el("p", { class: "dim small", text: "The changed call is decided again by the policy, and only it may run (through the SDKs and the MCP gateway; a hook is told the changed call instead). Values shown as [REDACTED…] must be written out." }),
      params,
      el("button", { type: "button", id: "d-approve-edited", class: "ok", text: "Approve with these arguments", onclick: () => decide(true, true) }),
    ),
    message,
  );
}

function editSection(edit) {
  if (!edit) return null;
  return section(
    edit.effect === "DENY" ? "Edited by the approver (the policy denied the edited call)" : "Edited by the approver",
    kv([
      ["by", describeCaller(edit.by)],
      ["policy on the edit", `${edit.effect} ${edit.reason_code}${edit.rule_id ? ` (rule ${edit.rule_id})` : ""}`],
      ["request hash", edit.request_hash],
    ]),
    el("h4", { text: "arguments the agent may run" }),
    pre(edit.params),
  );
}

function explainList(ex) {
  if (!ex) return el("p", { class: "dim", text: "No explanation available." });
  const list = el("ol", { class: "steps" });
  for (const s of ex.steps || []) {
    list.append(
      el(
        "li",
        { class: s.matched ? "step matched" : "step" },
        el("span", { class: "mono", text: s.rule_id || "(rule)" }),
        s.rule_ref ? el("span", { class: "dim mono", text: ` ${s.rule_ref}` }) : null,
        el("span", { class: "why", text: s.matched ? " — matched" : ` — ${s.failed || "did not match"}` }),
      ),
    );
  }
  const parts = [list];
  if (!(ex.steps || []).length) parts.unshift(el("p", { class: "dim", text: "No rule was tried." }));
  if (ex.note) parts.push(el("p", { class: "dim", text: ex.note }));
  const d = ex.decision || {};
  parts.push(el("p", { class: "dim", text: `Under the current policy: ${d.effect || "?"} ${d.reason_code || ""}` }));
  return el("div", {}, ...parts);
}

async function openDrawer(id, quiet) {
  state.open = id;
  for (const r of document.querySelectorAll("#rows tr")) r.classList.toggle("selected", r.dataset.id === id);
  const drawer = $("drawer");
  drawer.hidden = false;
  if (!quiet) $("d-body").replaceChildren(el("p", { class: "dim", text: "Loading…" }));
  let action, events, explained;
  try {
    [action, events, explained] = await Promise.all([
      api(`/v1/actions/${encodeURIComponent(id)}`),
      api(`/v1/actions/${encodeURIComponent(id)}/events`),
      api(`/v1/actions/${encodeURIComponent(id)}/explain`).catch(() => null),
    ]);
  } catch (e) {
    $("d-body").replaceChildren(el("p", { class: "error", text: e.message }));
    return;
  }
  if (state.open !== id) return;
  $("d-title").textContent = `${action.tool} / ${action.operation}`;
  const origin = location.origin;
  const commands = [
    `faramesh get ${action.id}`,
    `faramesh explain ${action.id}`,
    `faramesh events ${action.id}`,
  ];
  if (action.status === "pending_approval" && action.approval_id) {
    commands.push(`faramesh approve ${action.approval_id}`, `faramesh deny ${action.approval_id}`);
  }
  commands.push(`curl -H "Authorization: Bearer $FARAMESH_TOKEN" ${shellQuote(`${origin}/v1/actions/${action.id}`)}`);
  if (action.status === "pending_approval") {
    commands.push(
      `curl -X POST -H "Authorization: Bearer $FARAMESH_APPROVER_TOKEN" -H "Content-Type: application/json" -d '{"approve":true}' ${shellQuote(
        `${origin}/v1/actions/${action.id}/approval`,
      )}`,
    );
  }
  const body = [
    el(
      "div",
      { class: "d-status" },
      effectBadge(action.effect),
      statusBadge(action.status),
      badge(`risk-${action.risk_level}`, `risk ${action.risk_level}`),
    ),
    action.status === "pending_approval" ? section("Decide", approvalForm(action)) : approvalNote(action, events),
    editSection(action.edit),
    section(
      "Decision",
      kv([
        ["reason", action.reason],
        ["reason code", action.reason_code],
        ["rule", action.rule_id],
        ["rule at", action.rule_ref],
        ["action id", action.id],
        ["approval id", action.approval_id],
        ["request hash", action.request_hash],
        ["policy hash", action.policy_hash],
        ["decided", fmtTime(action.created_at)],
      ]),
    ),
    section("Call", kv([["agent", action.agent_id], ["tool", action.tool], ["operation", action.operation]]), el("h4", { text: "params (as recorded, secrets redacted)" }), pre(action.params), el("h4", { text: "context" }), pre(action.context)),
    section("Why: every rule tried", explainList(explained)),
    section(
      "Timeline",
      el(
        "ol",
        { class: "timeline" },
        ...events.map((e) =>
          el(
            "li",
            {},
            el("span", { class: "time", text: fmtTime(e.created_at) }),
            el("span", { class: "event", text: e.event_type }),
            e.meta && Object.keys(e.meta).length ? el("span", { class: "dim mono small", text: JSON.stringify(e.meta) }) : null,
          ),
        ),
      ),
    ),
    section("Caller", el("p", { class: "mono", text: describeCaller(action.caller) })),
    section("Commands", ...commands.map(copyable)),
  ];
  $("d-body").replaceChildren(...body.filter(Boolean));
}

document.addEventListener("DOMContentLoaded", boot);

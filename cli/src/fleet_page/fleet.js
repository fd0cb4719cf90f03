// The fleet page: every host's waiting calls from the fleet database; approve or deny one or
// many, each signed by `faramesh fleet serve` with the operator's SSH key.
"use strict";

const $ = (id) => document.getElementById(id);
const token = new URLSearchParams(location.hash.slice(1)).get("token") || "";
history.replaceState(null, "", location.pathname);

async function api(path, body) {
  const r = await fetch(path, {
    method: body ? "POST" : "GET",
    headers: { "authorization": `Bearer ${token}`, "content-type": "application/json" },
    body: body ? JSON.stringify(body) : undefined,
  });
  const data = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(data.error || `HTTP ${r.status}`);
  return data;
}

function age(ts) {
  const s = Math.max(0, Math.round((Date.now() - Date.parse(ts)) / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m`;
  if (s < 86400) return `${Math.floor(s / 3600)}h`;
  return `${Math.floor(s / 86400)}d`;
}

// The whole call: what Approve signs is what is shown, so nothing is cut.
function summary(a) {
  const params = a.params && typeof a.params === "object" ? JSON.stringify(a.params) : "";
  return `${a.tool}/${a.operation} ${params}`;
}

function cell(text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  return td;
}

function selected() {
  return [...document.querySelectorAll("#rows input[type=checkbox]:checked")].map((c) => c.value);
}

function syncBulk() {
  const n = selected().length;
  $("approve-selected").disabled = n === 0;
  $("deny-selected").disabled = n === 0;
}

async function decide(ids, approve) {
  for (const b of document.querySelectorAll("button")) b.disabled = true;
  try {
    const r = await api("/api/decide", { approval_ids: ids, decision: approve ? "approve" : "deny" });
    const list = $("results");
    for (const d of r.decisions) {
      const li = document.createElement("li");
      const outcome = d.error ? `not sent: ${d.error}` : d.outcome || "queued: the host applies it when it next reads the fleet database";
      li.textContent = `${d.approval_id.slice(0, 12)} on ${d.host || "?"}: ${outcome}`;
      li.className = d.error || (d.outcome || "").startsWith("refused") ? "bad" : "ok";
      list.prepend(li);
    }
  } catch (e) {
    const li = document.createElement("li");
    li.className = "bad";
    li.textContent = `failed: ${e.message}`;
    $("results").prepend(li);
  }
  await load();
}

async function load() {
  let data;
  try {
    data = await api("/api/pending");
  } catch (e) {
    $("live").textContent = `cannot read the fleet database: ${e.message}`;
    $("live").className = "bad";
    return;
  }
  $("live").textContent = `updated ${new Date().toLocaleTimeString()}`;
  $("live").className = "dim";
  $("approver").textContent = data.approver;
  $("database").textContent = data.database;
  const rows = $("rows");
  const keep = new Set(selected());
  rows.replaceChildren();
  for (const a of data.actions) {
    const tr = document.createElement("tr");
    tr.dataset.approval = a.approval_id;
    const pick = document.createElement("td");
    const box = document.createElement("input");
    box.type = "checkbox";
    box.value = a.approval_id;
    box.checked = keep.has(a.approval_id);
    box.setAttribute("aria-label", `select ${a.approval_id}`);
    box.addEventListener("change", syncBulk);
    pick.append(box);
    tr.append(pick, cell(a.host), cell(age(a.ts)), cell(a.agent_id), cell(summary(a), "call"), cell(a.rule_id || "-"),
      cell(a.risk_level || "-", `risk-${a.risk_level}`));
    const act = document.createElement("td");
    const yes = document.createElement("button");
    yes.textContent = "Approve";
    yes.className = "approve";
    yes.addEventListener("click", () => decide([a.approval_id], true));
    const no = document.createElement("button");
    no.textContent = "Deny";
    no.className = "deny";
    no.addEventListener("click", () => decide([a.approval_id], false));
    act.append(yes, no);
    tr.append(act);
    rows.append(tr);
  }
  $("count").textContent = `(${data.actions.length})`;
  $("empty").hidden = data.actions.length > 0;
  syncBulk();
}

$("select-all").addEventListener("change", (e) => {
  for (const c of document.querySelectorAll("#rows input[type=checkbox]")) c.checked = e.target.checked;
  syncBulk();
});
$("approve-selected").addEventListener("click", () => decide(selected(), true));
$("deny-selected").addEventListener("click", () => decide(selected(), false));

if (!token) {
  $("signin").hidden = false;
} else {
  $("queue").hidden = false;
  load();
  setInterval(load, 5000);
}

/**
 * Faramesh for OpenClaw: every tool call OpenClaw makes is decided by the Faramesh daemon before
 * it runs (the same decision, log and approvals as every other door), and its outcome recorded
 * after. Install: `openclaw plugins install <this package>`; documentation: docs/hooks.md.
 *
 * The plugin answers OpenClaw's `before_tool_call` hook over the daemon's socket with
 * `@faramesh/sdk`'s transport. Anything but PERMIT blocks the call with the reason; so does a
 * daemon that cannot be reached, an answer that cannot be read or a call that cannot be mapped:
 * nothing runs without a decision. (OpenClaw itself blocks a call whose hook throws or times out.)
 */
import { lstatSync, mkdirSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { isAbsolute, join, resolve } from "node:path";

// The SDK is compiled into this package (no runtime dependencies): its socket transport and
// request hash are the same code `@faramesh/sdk` ships.
import { type Decision, type Json, SocketTransport, type Transport, requestHash } from "../../../sdk/typescript/src/index.js";

/** The plugin's settings (`plugins.entries.faramesh.config` in openclaw.json). */
export interface FarameshPluginConfig {
  /** The daemon's socket (default: FARAMESH_SOCKET, else ~/.faramesh/runtime/faramesh.sock). */
  socket?: string;
  /** The agent id the policy sees (default: FARAMESH_AGENT_ID, else `openclaw`). */
  agentId?: string;
  /** How long a DEFER is held for a person's approval before the call is refused (ms, default 10000). */
  waitForApprovalMs?: number;
  /** Where relative file paths are resolved (default: the agent's OpenClaw workspace). */
  workspace?: string;
  /** How long one request to the daemon may take (ms, default 5000). */
  timeoutMs?: number;
}

/** The call the policy sees. */
export interface PolicyCall {
  tool: string;
  operation: string;
  args: Json;
  /** Every path the call acts on, read as OpenClaw opens it (decided one by one when several). */
  paths?: string[];
  /** What the path reader met (a symlink whose target is missing, a `..` after a symlink), for the call's context. */
  notes?: string[];
}

/** What OpenClaw's `before_tool_call` hands a handler (the fields this plugin reads). */
interface ToolEvent {
  toolName: string;
  params: Record<string, unknown>;
  toolKind?: string;
  toolCallId?: string;
  runId?: string;
  derivedPaths?: readonly string[];
  result?: unknown;
  error?: string;
}

interface ToolContext {
  agentId?: string;
  sessionKey?: string;
  sessionId?: string;
  toolCallId?: string;
}

type BeforeResult = { block: true; blockReason: string } | undefined;

interface PluginApi {
  pluginConfig?: unknown;
  config?: unknown;
  logger?: { info?(m: string): void; warn?(m: string): void };
  on(hook: "before_tool_call", handler: (event: ToolEvent, ctx: ToolContext) => Promise<BeforeResult>, opts?: Json): void;
  on(hook: "after_tool_call", handler: (event: ToolEvent, ctx: ToolContext) => Promise<void>, opts?: Json): void;
}

class Refused extends Error {}

function expandHome(p: string): string {
  if (p === "~") return homedir();
  return p.startsWith("~/") ? join(homedir(), p.slice(2)) : p;
}

/** The agent's workspace as OpenClaw resolves it: the agent's own, the defaults', else `<state dir>/workspace`. */
export function workspaceOf(config: unknown, agentId: string | undefined): string {
  const cfg = (config ?? {}) as Json;
  const agents = (cfg["agents"] ?? {}) as Json;
  const list = Array.isArray(agents["list"]) ? (agents["list"] as Json[]) : [];
  const entries = (agents["entries"] ?? {}) as Record<string, Json>;
  const own = agentId ? (entries[agentId]?.["workspace"] ?? list.find((a) => a["id"] === agentId)?.["workspace"]) : undefined;
  const defaults = ((agents["defaults"] ?? {}) as Json)["workspace"];
  const chosen = [own, defaults].find((w): w is string => typeof w === "string" && w.length > 0);
  if (chosen) return resolve(expandHome(chosen));
  const state = process.env["OPENCLAW_STATE_DIR"] || join(homedir(), ".openclaw");
  return join(state, "workspace");
}

/**
 * What a path names as OpenClaw will open it: one path, or two when a `..` after a symlink
 * names another file read as text than walked as the kernel walks it; and what was met on the way.
 */
export interface ResolvedPath {
  paths: string[];
  notes: string[];
}

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
const UTF8 = new TextDecoder("utf-8", { fatal: true });
/** The most symlinks one path may pass through (the kernel's own limit). */
const MAX_LINKS = 40;

/** The components of a path as the kernel reads them (`..` kept, `.` and empty ones left out). */
function components(p: string): string[] {
  return p.split("/").filter((c) => c !== "" && c !== ".");
}

function code(e: unknown): string {
  return (e as NodeJS.ErrnoException).code ?? String(e);
}

/**
 * The absolute `path` walked from the root as the kernel walks it: each symlink followed where
 * it is met, through its target text even when that target is missing (where a file created
 * through it lands), `..` applied to the directory reached; what does not exist (yet) is taken
 * as written, and an existing directory ends in `/`. A symlink that cannot be read, more than 40
 * symlinks (a loop), a directory that cannot be searched or a link to a name that is not UTF-8
 * is refused.
 */
function walk(raw: string, path: string): { path: string; note?: string } {
  let done: string[] = [];
  const todo = components(path);
  // How many of `done`'s last components do not exist (taken as written).
  let missing = 0;
  let links = 0;
  let note: string | undefined;
  while (todo.length > 0) {
    const part = todo.shift() as string;
    if (part === "..") {
      done.pop();
      missing = Math.max(0, missing - 1);
      continue;
    }
    if (missing > 0) {
      done.push(part);
      missing += 1;
      continue;
    }
    const next = "/" + [...done, part].join("/");
    let st;
    try {
      st = lstatSync(next);
    } catch (e) {
      if (code(e) === "ENOENT" || code(e) === "ENOTDIR") {
        done.push(part);
        missing = 1;
        continue;
      }
      throw new Refused(`the path \`${raw}\` cannot be followed: \`${next}\` cannot be read (${code(e)})`);
    }
    if (!st.isSymbolicLink()) {
      // Below a file nothing opens; as written, a `..` after it comes back.
      done.push(part);
      missing = !st.isDirectory() && todo.length > 0 ? 1 : 0;
      continue;
    }
    links += 1;
    if (links > MAX_LINKS) {
      throw new Refused(`the path \`${raw}\` passes through more than ${MAX_LINKS} symlinks (a loop at \`${next}\`), which no host can open`);
    }
    let bytes: Buffer;
    try {
      bytes = readlinkSync(next, { encoding: "buffer" });
    } catch (e) {
      throw new Refused(`the path \`${raw}\` cannot be followed: \`${next}\` is a symlink that cannot be read (${code(e)})`);
    }
    let target: string;
    try {
      target = UTF8.decode(bytes);
    } catch {
      throw new Refused(`the path \`${raw}\` leads to \`${bytes.toString("latin1")}\`, which is not valid UTF-8`);
    }
    if (target === "") throw new Refused(`the path \`${raw}\` cannot be followed: \`${next}\` is a symlink to nothing`);
    if (note === undefined) {
      try {
        statSync(next);
      } catch (e) {
        if (code(e) === "ENOENT") note = `\`${raw}\`: \`${next}\` is a symlink to \`${target}\`, which does not exist: decided on the file it leads to`;
      }
    }
    if (target.startsWith("/")) done = [];
    todo.unshift(...components(target));
  }
  let out = "/" + done.join("/");
  if (missing === 0 && out !== "/") {
    try {
      if (statSync(out).isDirectory()) out += "/";
    } catch {
      // Walked a moment ago: gone meanwhile, decided as a file.
    }
  }
  return note === undefined ? { path: out } : { path: out, note };
}

/**
 * `path` as OpenClaw opens it (docs/hooks.md, "How paths are read"): `~` and the workspace
 * resolved, then walked as the kernel walks it (symlinks followed where they are met, a dangling
 * one through its target text, `..` applied to the directory reached); when resolving `.` and
 * `..` as text first names another file, that one is decided too. An existing directory ends
 * in `/`. A NUL, text that is not valid Unicode, a path leading to a name that is not UTF-8, a
 * symlink that cannot be read or a loop is refused.
 */
export function resolvePath(path: unknown, workspace: string): ResolvedPath {
  if (typeof path !== "string" || path.trim() === "") throw new Refused("the call names no file `path`");
  if (path.includes("\0")) throw new Refused(`the path \`${JSON.stringify(path).slice(1, -1)}\` holds a NUL byte`);
  if (LONE_SURROGATE.test(path)) throw new Refused(`the path ${JSON.stringify(path)} is not valid UTF-8 (a lone surrogate)`);
  const p = expandHome(path.trim());
  const joined = isAbsolute(p) ? p : `${workspace}/${p}`;
  const found: ResolvedPath = { paths: [], notes: [] };
  for (const reading of [joined, resolve(joined)]) {
    const r = walk(path, reading);
    if (!found.paths.includes(r.path)) found.paths.push(r.path);
    if (r.note !== undefined && !found.notes.includes(r.note)) found.notes.push(r.note);
  }
  if (found.paths.length === 2) {
    found.notes.push(
      `\`${path}\` has a \`..\` after a symlink: the kernel opens \`${found.paths[0]}\`, a host that resolves \`..\` as text first opens \`${found.paths[1]}\`; both are decided`,
    );
  }
  return found;
}

/**
 * A file call's paths, read as OpenClaw opens them: `path` for one; also `paths` for a tool
 * acting on several, or a path read two ways.
 */
function withPaths(tool: string, operation: string, params: Json, raw: unknown[], several: boolean, workspace: string): PolicyCall {
  const found = raw.map((r) => resolvePath(r, workspace));
  const paths = [...new Set(found.flatMap((f) => f.paths))];
  const notes = [...new Set(found.flatMap((f) => f.notes))];
  const args: Json = { ...params };
  if (several || paths.length > 1) args["paths"] = paths;
  if (paths.length === 1) args["path"] = paths[0];
  else delete args["path"];
  return { tool, operation, args, paths, notes };
}

/**
 * The call OpenClaw's tool becomes (docs/hooks.md): `exec` → `shell`/`exec` (the command in
 * `command`), `read`/`write`/`edit` → `file`/`read|write|edit` (with `path`) and `apply_patch` →
 * `file`/`edit` (with `paths`, every file OpenClaw derived from the patch), each path read as
 * OpenClaw opens it; `web_fetch` → `http`/`get` (`url`), Code Mode's `exec` →
 * `code_mode_exec`/`invoke`, any other tool → its own name, `invoke`.
 */
export function mapCall(event: Pick<ToolEvent, "toolName" | "params" | "toolKind" | "derivedPaths">, workspace: string): PolicyCall {
  const params: Json = { ...(event.params ?? {}) };
  const file = (operation: string): PolicyCall => {
    const named = [params["path"], params["file_path"]].filter((v) => v !== undefined && v !== null);
    if (named.length === 2 && named[0] !== named[1]) {
      throw new Refused("the call names two different paths (`path` and `file_path`): the plugin cannot tell which file the tool uses");
    }
    return withPaths("file", operation, params, [named[0]], false, workspace);
  };
  switch (event.toolName) {
    case "exec":
      if (event.toolKind === "code_mode_exec") return { tool: "code_mode_exec", operation: "invoke", args: params };
      if (typeof params["command"] !== "string") throw new Refused("`exec` names no `command`");
      return { tool: "shell", operation: "exec", args: params };
    case "read":
      return file("read");
    case "write":
      return file("write");
    case "edit":
      return file("edit");
    case "apply_patch": {
      // Every file the patch touches is decided on: the call runs only if each one may be edited.
      const derived = event.derivedPaths ?? [];
      if (derived.length === 0) throw new Refused("`apply_patch` names no file OpenClaw could read");
      if (derived.length > MAX_PATHS) throw new Refused(`\`apply_patch\` touches ${derived.length} files, more than the ${MAX_PATHS} one call may`);
      return withPaths("file", "edit", params, [...derived], true, workspace);
    }
    case "web_fetch":
      if (typeof params["url"] !== "string") throw new Refused("`web_fetch` names no `url`");
      return { tool: "http", operation: "get", args: params };
    default:
      if (!/^[A-Za-z0-9_.:-]{1,128}$/.test(event.toolName)) throw new Refused(`the tool name \`${event.toolName}\` is not a name the policy can match`);
      return { tool: event.toolName, operation: "invoke", args: params };
  }
}

function readConfig(raw: unknown): FarameshPluginConfig {
  const c = (raw && typeof raw === "object" ? raw : {}) as Json;
  const str = (k: string) => (typeof c[k] === "string" && (c[k] as string).length > 0 ? (c[k] as string) : undefined);
  const num = (k: string) => (typeof c[k] === "number" && Number.isFinite(c[k]) ? (c[k] as number) : undefined);
  const out: FarameshPluginConfig = {};
  for (const k of ["socket", "agentId", "workspace"] as const) {
    const v = str(k);
    if (v !== undefined) out[k] = v;
  }
  for (const k of ["waitForApprovalMs", "timeoutMs"] as const) {
    const v = num(k);
    if (v !== undefined) out[k] = v;
  }
  return out;
}

/**
 * Where a refused DEFER's approval waits for the same call to be retried, shared with
 * `faramesh hook` (so a retry in a new OpenClaw process carries it too):
 * `$XDG_RUNTIME_DIR/faramesh-hooks/approval-<request hash>`, else under `~/.faramesh/runtime/hooks/`.
 */
function approvalFile(hash: string): string {
  const runtime = process.env["XDG_RUNTIME_DIR"];
  const dir = runtime ? join(runtime, "faramesh-hooks") : join(homedir(), ".faramesh", "runtime", "hooks");
  return join(dir, `approval-${hash}`);
}

const approvals = {
  get(hash: string): string | undefined {
    try {
      const id = readFileSync(approvalFile(hash), "utf8").trim();
      return /^[0-9a-f]{8,64}$/.test(id) ? id : undefined;
    } catch {
      return undefined;
    }
  },
  set(hash: string, id: string): void {
    try {
      const file = approvalFile(hash);
      mkdirSync(join(file, ".."), { recursive: true, mode: 0o700 });
      writeFileSync(file, id, { mode: 0o600 });
    } catch {
      // Without the file a retry asks again: a new approval, never a bypass.
    }
  },
  delete(hash: string): void {
    rmSync(approvalFile(hash), { force: true });
  },
};

/** The most paths one call may act on. */
const MAX_PATHS = 256;

/** Permitted calls whose outcome is awaited, at most (the oldest is forgotten first). */
const MAX_OPEN_ACTIONS = 10_000;

/** Outcomes larger than this are recorded as their size only. */
const MAX_RESULT_BYTES = 64 * 1024;

/** The plugin: a handler for OpenClaw's `before_tool_call` and one for `after_tool_call`. */
export function createFaramesh(config: FarameshPluginConfig, openclawConfig: unknown, transport?: Transport) {
  const agentId = config.agentId ?? process.env["FARAMESH_AGENT_ID"] ?? "openclaw";
  const waitMs = config.waitForApprovalMs ?? 10_000;
  const daemon = transport ?? new SocketTransport(config.socket ?? process.env["FARAMESH_SOCKET"] ?? undefined, config.timeoutMs ?? 5_000);
  // A refused DEFER's approval is kept by the call's request hash (`approvals`): the same call
  // retried carries it (once approved, it runs). A permitted call's actions (one per path for
  // a tool acting on several), by OpenClaw's tool call id, until its outcome is recorded.
  const actions = new Map<string, string[]>();

  /** One of a tool call's decisions (one per path for a tool acting on several). */
  interface Decided {
    path: string | undefined;
    call: Json;
    hash: string;
    d: Decision;
  }
  const on = (x: Decided) => (x.path === undefined ? "" : `\`${x.path}\`: `);
  const codeAndRule = (x: Decided) => `${x.d.reason_code}${x.d.rule_id ? `, rule ${x.d.rule_id}` : ""}`;

  async function before(event: ToolEvent, ctx: ToolContext): Promise<BeforeResult> {
    let mapped: PolicyCall;
    try {
      mapped = mapCall(event, config.workspace ? resolve(expandHome(config.workspace)) : workspaceOf(openclawConfig, ctx.agentId));
    } catch (e) {
      return { block: true, blockReason: `Faramesh refused the call: ${(e as Error).message}` };
    }
    // The context holds what stays the same when the call is retried (the request hash covers
    // it), never OpenClaw's id of one tool call.
    const context: Json = { host: "openclaw", host_tool: event.toolName };
    if (ctx.agentId) context["openclaw_agent"] = ctx.agentId;
    if (ctx.sessionKey) context["session"] = ctx.sessionKey;
    if (mapped.notes?.length) context["path_note"] = mapped.notes.join("; ");
    // A tool acting on several paths is decided once per path, each call with its `path`:
    // denied if any is denied, held if any waits for a person, run only if every one is permitted.
    const several = (mapped.paths?.length ?? 0) > 1;
    const each = several ? (mapped.paths ?? []).map((p) => ({ path: p as string | undefined, args: { ...mapped.args, path: p } as Json })) : [{ path: undefined, args: mapped.args }];
    const decided: Decided[] = [];
    try {
      for (const one of each) {
        const call: Json = { agent_id: agentId, tool: mapped.tool, operation: mapped.operation, args: one.args, context };
        // The call's session (what a grant made on its approval covers): OpenClaw's session id, else its key.
        const session = ctx.sessionId || ctx.sessionKey;
        if (session) call["session_id"] = session;
        const hash = requestHash(agentId, mapped.tool, mapped.operation, one.args, context);
        const known = approvals.get(hash);
        if (known) call["approval_id"] = known;
        const d = await daemon.govern(call);
        decided.push({ path: one.path, call, hash, d });
        if (d.effect === "DENY") break;
      }
      if (waitMs > 0 && !decided.some((x) => x.d.effect === "DENY")) {
        // One time limit for the whole call, however many of its paths wait.
        const deadline = Date.now() + waitMs;
        for (const x of decided) {
          if (x.d.effect !== "DEFER" || !x.d.approval_id) continue;
          const left = deadline - Date.now();
          if (left <= 0) break;
          const status = await daemon.waitApproval(x.d, left);
          if (status !== "pending") x.d = await daemon.govern({ ...x.call, approval_id: x.d.approval_id });
        }
      }
    } catch (e) {
      return { block: true, blockReason: `Faramesh refused the call: ${(e as Error).message}` };
    }
    for (const x of decided) {
      if (x.d.effect === "DEFER") {
        if (x.d.approval_id) approvals.set(x.hash, x.d.approval_id);
      } else {
        approvals.delete(x.hash);
      }
    }
    const denied = decided.find((x) => x.d.effect === "DENY");
    if (denied) {
      return { block: true, blockReason: `Faramesh denied this call: ${on(denied)}${denied.d.reason} (${codeAndRule(denied)})` };
    }
    const deferred = decided.filter((x) => x.d.effect === "DEFER");
    if (deferred.length > 0) {
      const reasons = deferred.map((x) => `${on(x)}${x.d.reason}; ${codeAndRule(x)}`).join("; ");
      const commands = deferred.map((x) => `\`faramesh approve ${x.d.approval_id ?? "?"}\``).join(" and ");
      return {
        block: true,
        blockReason: `Faramesh: this call waits for a person's approval (${reasons}): ` + `approve it with ${commands} or in the dashboard, then retry the same call`,
      };
    }
    const id = event.toolCallId ?? ctx.toolCallId;
    const permitted = decided.flatMap((x) => (x.d.action_id ? [x.d.action_id] : []));
    if (id && permitted.length > 0) {
      // A lower-priority hook may still block the call, and then no after_tool_call comes:
      // keep the newest outcomes-to-record only, so a long-lived Gateway does not grow.
      if (actions.size >= MAX_OPEN_ACTIONS) actions.delete(actions.keys().next().value as string);
      actions.set(id, permitted);
    }
    return undefined;
  }

  async function after(event: ToolEvent, ctx: ToolContext): Promise<void> {
    const id = event.toolCallId ?? ctx.toolCallId;
    const permitted = id ? actions.get(id) : undefined;
    if (!id || !permitted) return;
    actions.delete(id);
    let result: unknown = event.result ?? null;
    const text = JSON.stringify(result) ?? "null";
    if (text.length > MAX_RESULT_BYTES) result = { truncated: true, bytes: text.length };
    // The outcome is a record, not a decision: failing to write it never fails the tool that ran.
    for (const action of permitted) {
      try {
        await daemon.startAction(action);
        await daemon.reportResult(action, !event.error, result, event.error);
      } catch {
        // reported by the SDK's logger
      }
    }
  }

  return { before, after, transport: daemon };
}

const plugin = {
  id: "faramesh",
  name: "Faramesh",
  description: "Every tool call is decided by the Faramesh daemon before it runs, and recorded in its signed log.",
  register(api: PluginApi): void {
    const config = readConfig(api.pluginConfig);
    const faramesh = createFaramesh(config, api.config);
    // The highest priority: Faramesh decides before other plugins rewrite or run anything.
    api.on("before_tool_call", faramesh.before, { priority: 1000 });
    api.on("after_tool_call", faramesh.after);
    api.logger?.info?.(`faramesh: governing every tool call through ${faramesh.transport.target}`);
  },
};

export default plugin;

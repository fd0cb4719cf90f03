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
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
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

function absolute(path: unknown, workspace: string): string {
  if (typeof path !== "string" || path.trim() === "") throw new Refused("the call names no file `path`");
  const p = expandHome(path.trim());
  return isAbsolute(p) ? resolve(p) : resolve(workspace, p);
}

/**
 * The call OpenClaw's tool becomes (docs/hooks.md): `exec` → `shell`/`exec` (the command in
 * `command`), `read`/`write`/`edit` → `file`/`read|write|edit` and `apply_patch` → `file`/`edit`
 * (each with the absolute `path`), `web_fetch` → `http`/`get` (`url`), Code Mode's `exec` →
 * `code_mode_exec`/`invoke`, any other tool → its own name, `invoke`.
 */
export function mapCall(event: Pick<ToolEvent, "toolName" | "params" | "toolKind" | "derivedPaths">, workspace: string): PolicyCall {
  const params: Json = { ...(event.params ?? {}) };
  const file = (operation: string): PolicyCall => ({
    tool: "file",
    operation,
    args: { ...params, path: absolute(params["path"] ?? params["file_path"], workspace) },
  });
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
      // The policy decides on one file: a patch touching several is refused (split it).
      const paths = [...new Set(event.derivedPaths ?? [])];
      if (paths.length !== 1) {
        throw new Refused(
          paths.length === 0
            ? "`apply_patch` names no file OpenClaw could read"
            : `\`apply_patch\` touches ${paths.length} files (${paths.join(", ")}): the policy decides on one file per call`,
        );
      }
      return { tool: "file", operation: "edit", args: { ...params, path: absolute(paths[0], workspace) } };
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
  // retried carries it (once approved, it runs). A permitted call's action, by OpenClaw's tool
  // call id, until its outcome is recorded.
  const actions = new Map<string, string>();

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
    const call: Json = { agent_id: agentId, tool: mapped.tool, operation: mapped.operation, args: mapped.args, context };
    const hash = requestHash(agentId, mapped.tool, mapped.operation, mapped.args, context);
    const known = approvals.get(hash);
    if (known) call["approval_id"] = known;
    let d: Decision;
    try {
      d = await daemon.govern(call);
      if (d.effect === "DEFER" && d.approval_id && waitMs > 0) {
        const status = await daemon.waitApproval(d, waitMs);
        if (status !== "pending") d = await daemon.govern({ ...call, approval_id: d.approval_id });
      }
    } catch (e) {
      return { block: true, blockReason: `Faramesh refused the call: ${(e as Error).message}` };
    }
    const rule = d.rule_id ? `, rule ${d.rule_id}` : "";
    if (d.effect === "PERMIT") {
      approvals.delete(hash);
      const id = event.toolCallId ?? ctx.toolCallId;
      if (id && d.action_id) {
        // A lower-priority hook may still block the call, and then no after_tool_call comes:
        // keep the newest outcomes-to-record only, so a long-lived Gateway does not grow.
        if (actions.size >= MAX_OPEN_ACTIONS) actions.delete(actions.keys().next().value as string);
        actions.set(id, d.action_id);
      }
      return undefined;
    }
    if (d.effect === "DEFER") {
      const approval = d.approval_id ?? "?";
      if (d.approval_id) approvals.set(hash, d.approval_id);
      return {
        block: true,
        blockReason:
          `Faramesh: this call waits for a person's approval (${d.reason}; ${d.reason_code}${rule}): ` +
          `approve it with \`faramesh approve ${approval}\` or in the dashboard, then retry the same call`,
      };
    }
    approvals.delete(hash);
    return { block: true, blockReason: `Faramesh denied this call: ${d.reason} (${d.reason_code}${rule})` };
  }

  async function after(event: ToolEvent, ctx: ToolContext): Promise<void> {
    const id = event.toolCallId ?? ctx.toolCallId;
    const action = id ? actions.get(id) : undefined;
    if (!id || !action) return;
    actions.delete(id);
    let result: unknown = event.result ?? null;
    const text = JSON.stringify(result) ?? "null";
    if (text.length > MAX_RESULT_BYTES) result = { truncated: true, bytes: text.length };
    // The outcome is a record, not a decision: failing to write it never fails the tool that ran.
    try {
      await daemon.startAction(action);
      await daemon.reportResult(action, !event.error, result, event.error);
    } catch {
      // reported by the SDK's logger
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

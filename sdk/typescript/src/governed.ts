/**
 * The governance step every wrapped tool goes through, and `governedTools`.
 * PERMIT runs the tool; DENY throws ToolDeniedError (or calls onDeny); DEFER throws, waits for a
 * human (`onDefer: "wait"`), or calls onDefer. Nothing runs on an error unless `failOpen`.
 */
import { DaemonUnreachableError, type Decision, FarameshTimeoutError, InvalidRequestError, ToolDeniedError } from "./errors.js";
import { log } from "./log.js";
import { type Json, type Transport, type Waited, autoTransport, defaultTransport } from "./transport.js";

export type DenialCallback = (approvalId: string | null, denial: ToolDeniedError) => unknown;

export interface GovernOptions {
  /** Required (or FARAMESH_AGENT_ID). */
  agentId?: string;
  transport?: Transport;
  onDefer?: "throw" | "wait" | "interrupt" | DenialCallback;
  onDeny?: "throw" | DenialCallback;
  /** Cap on a daemon round trip (default 10 s). */
  timeoutMs?: number;
  /** How long `onDefer: "wait"` waits for a human (default 5 min). */
  approvalTimeoutMs?: number;
  /** Permit, with a warning, when the daemon is unreachable. Refused when FARAMESH_ENV=production. */
  failOpen?: boolean;
}

/** The only metadata keys forwarded to the daemon. */
export const METADATA_KEYS = ["principal", "session_id", "request_id", "tags", "traceparent"] as const;

export function filterMetadata(...sources: (Json | undefined | null)[]): Json {
  const out: Json = {};
  for (const source of sources) {
    if (!source || typeof source !== "object") continue;
    for (const key of METADATA_KEYS) {
      const value = source[key];
      if (value === undefined || value === null) continue;
      if (key === "tags") out[key] = (Array.isArray(value) ? value : [value]).map(String);
      else if (key === "principal") out[key] = value;
      else out[key] = String(value);
    }
  }
  return out;
}

/** `value` as JSON data (undefined dropped, anything else not JSON becomes its string). */
export function jsonable(value: unknown): unknown {
  if (value === null || typeof value === "boolean" || typeof value === "number" || typeof value === "string") return value;
  if (typeof value === "bigint") return value;
  if (Array.isArray(value)) return value.map(jsonable);
  if (typeof value === "object") {
    const out: Json = {};
    for (const [k, v] of Object.entries(value as Json)) if (v !== undefined) out[k] = jsonable(v);
    return out;
  }
  return value === undefined ? null : String(value);
}

/** Run (with `args` instead of the ones asked about when an approver edited the call), or
 * return `value` instead. */
export type Verdict = { run: true; decision: Decision; args?: Json } | { run: false; decision: Decision; value: unknown };

/** The settings of a governed tool set and the one governance step all adapters call. */
export class Governor {
  readonly agentId: string;
  readonly onDefer: "throw" | "wait" | "interrupt" | DenialCallback;
  readonly onDeny: "throw" | DenialCallback;
  readonly timeoutMs: number;
  readonly approvalTimeoutMs: number;
  readonly failOpen: boolean;
  private explicit: Transport | undefined;
  private readonly ownTimeout: boolean;

  constructor(options: GovernOptions = {}) {
    const agent = options.agentId ?? process.env["FARAMESH_AGENT_ID"];
    if (!agent) throw new TypeError("agentId is required (or set FARAMESH_AGENT_ID)");
    const onDefer = options.onDefer ?? "throw";
    if (onDefer !== "throw" && onDefer !== "wait" && onDefer !== "interrupt" && typeof onDefer !== "function") {
      throw new TypeError(`onDefer must be "throw", "wait", "interrupt" or a callback, not ${String(onDefer)}`);
    }
    const onDeny = options.onDeny ?? "throw";
    if (onDeny !== "throw" && typeof onDeny !== "function") {
      throw new TypeError(`onDeny must be "throw" or a callback (denials never resolve), not ${String(onDeny)}`);
    }
    if (options.failOpen && (process.env["FARAMESH_ENV"] ?? "").toLowerCase() === "production") {
      throw new TypeError("failOpen is refused when FARAMESH_ENV=production");
    }
    this.agentId = agent;
    this.onDefer = onDefer;
    this.onDeny = onDeny;
    this.timeoutMs = options.timeoutMs ?? 10_000;
    this.ownTimeout = options.timeoutMs !== undefined;
    this.approvalTimeoutMs = options.approvalTimeoutMs ?? 300_000;
    this.failOpen = options.failOpen ?? false;
    this.explicit = options.transport;
    if (this.failOpen) log("warn", `faramesh: failOpen for agent ${agent}: calls run when the daemon is unreachable`);
  }

  get transport(): Transport {
    // No timeout given: the process's shared transport; a timeout: a transport of its own.
    this.explicit ??= this.ownTimeout ? autoTransport(this.timeoutMs) : defaultTransport();
    return this.explicit;
  }

  call(tool: string, args: Json, metadata?: Json, approvalId?: string | null): Json {
    const call: Json = {
      agent_id: this.agentId,
      tool,
      operation: "invoke",
      args: jsonable(args ?? {}),
      context: {},
      ...filterMetadata(metadata),
    };
    const principalToken = process.env["FARAMESH_PRINCIPAL_TOKEN"];
    if (principalToken) call["principal_token"] = principalToken;
    if (approvalId) call["approval_id"] = approvalId;
    return call;
  }

  async ask(call: Json): Promise<Decision> {
    const started = performance.now();
    try {
      const d = await this.transport.govern(call);
      log(
        "info",
        `faramesh: ${String(call["agent_id"])} ${String(call["tool"])}/${String(call["operation"])} -> ${d.effect} ${d.reason_code} in ${(performance.now() - started).toFixed(2)} ms (action ${String(d.action_id)})`,
      );
      return d;
    } catch (e) {
      if (this.failOpen && (e instanceof DaemonUnreachableError || e instanceof FarameshTimeoutError)) {
        log("warn", `faramesh: FAIL OPEN: ${String(call["tool"])} for ${this.agentId} runs without a decision: ${e.message}`);
        return { effect: "PERMIT", reason_code: "FAIL_OPEN", reason: e.message, action_id: null };
      }
      throw e;
    }
  }

  /** Applies onDefer / onDeny to a decision. `canEdit`: the caller runs the verdict's `args`
   * when an approver approved the call with edits; otherwise such a call is refused, naming
   * the suggested call. */
  async settle(call: Json, decision: Decision, canEdit = false): Promise<Verdict> {
    if (decision.effect === "PERMIT") return { run: true, decision };
    if (decision.effect === "DEFER") {
      if (this.onDefer === "wait") {
        const t = this.transport;
        const waited: Waited = t.waitForApproval
          ? await t.waitForApproval(decision, this.approvalTimeoutMs)
          : { status: await t.waitApproval(decision, this.approvalTimeoutMs), edit: null };
        if (waited.status === "pending") {
          throw new ToolDeniedError(decision, `approval ${String(decision.approval_id)} is still pending after ${this.approvalTimeoutMs} ms`);
        }
        const approvalId = decision.approval_id ?? decision.defer_token;
        const params = waited.status === "approved" ? waited.edit?.["params"] : undefined;
        if (params && typeof params === "object" && !Array.isArray(params)) {
          if (!canEdit) {
            const message = `approval ${String(approvalId)} approved this call with changed arguments, which this tool cannot substitute: make the call again as \`${String(call["tool"])}\` with ${JSON.stringify(params)}`;
            const refusal: Decision = { ...decision, effect: "DENY", reason_code: "APPROVAL_DENIED", reason: message, structured_denial: null };
            return this.deny(refusal);
          }
          const edited = { ...call, args: params as Json };
          const verdict = await this.settle(edited, await this.ask({ ...edited, approval_id: approvalId }));
          return verdict.run ? { ...verdict, args: params as Json } : verdict;
        }
        const resumed = await this.ask({ ...call, approval_id: approvalId });
        return this.settle(call, resumed);
      }
      const denial = new ToolDeniedError(decision);
      if (typeof this.onDefer === "function") return { run: false, decision, value: await this.onDefer(denial.approvalId, denial) };
      throw denial;
    }
    return this.deny(decision);
  }

  private async deny(decision: Decision): Promise<Verdict> {
    const denial = new ToolDeniedError(decision);
    if (typeof this.onDeny === "function") return { run: false, decision, value: await this.onDeny(denial.approvalId, denial) };
    throw denial;
  }

  /** What the agent gets of a tool's `result`: when the decision says a `results:` rule reads
   * it (`check_result`), the daemon's verdict decides: unchanged (`pass`, `flag`), redacted
   * (`redact`), or a refusal (`deny`: thrown, or `onDeny`'s value). */
  async checked(decision: Decision, result: unknown): Promise<unknown> {
    if (!decision.check_result || !decision.action_id) return result;
    const t = this.transport;
    if (!t.checkResult) throw new InvalidRequestError(`the ${t.kind} transport cannot have results checked`, "result");
    const answer = await t.checkResult(decision.action_id, jsonable(result));
    if (answer["verdict"] === "pass" || answer["verdict"] === "flag") return result;
    if (answer["verdict"] === "redact") return answer["result"];
    const refusal: Decision = {
      effect: "DENY",
      reason_code: "RESULT_DENIED",
      reason: `the tool's result was withheld: ${String(answer["reason"] ?? "a results rule refused it")}`,
      rule_id: (answer["rule_id"] as string | null) ?? null,
      rule_ref: (answer["rule_ref"] as string | null) ?? null,
      action_id: decision.action_id,
    };
    const v = await this.deny(refusal);
    return v.run ? result : v.value;
  }

  async gate(tool: string, args: Json, metadata?: Json, canEdit = false): Promise<Verdict> {
    const call = this.call(tool, args, metadata);
    return this.settle(call, await this.ask(call), canEdit);
  }
}

/** An onDeny / onDefer callback that hands the structured denial to the model as the tool's
 * output (JSON text) instead of throwing. */
export function reportDenial(_approvalId: string | null, denial: ToolDeniedError): string {
  return JSON.stringify(denial.toJSON());
}

type AnyFn = (...args: never[]) => unknown;

function isLangChainTool(t: unknown): t is { name: string; _call: (...a: unknown[]) => Promise<unknown> } {
  return !!t && typeof t === "object" && typeof (t as Json)["_call"] === "function" && typeof (t as Json)["invoke"] === "function" && "lc_namespace" in (t as object);
}

function isOpenAIAgentsTool(t: unknown): t is { type: "function"; name: string; invoke: (ctx: unknown, input: string, details?: unknown) => Promise<unknown> } {
  return !!t && typeof t === "object" && (t as Json)["type"] === "function" && typeof (t as Json)["invoke"] === "function" && "needsApproval" in (t as object);
}

function isAiSdkTool(t: unknown): t is { execute?: (input: unknown, options: unknown) => unknown } {
  return !!t && typeof t === "object" && ("inputSchema" in (t as object) || "parameters" in (t as object)) && typeof (t as Json)["execute"] === "function";
}

/** Tool call id -> the governor and DEFER decision of a call paused in an OpenAI Agents run or an AI SDK tool loop. */
export const PAUSED = new Map<string, { governor: Governor; decision: Decision }>();

/** An approver's edited arguments as the values of a call made without an object: `input`
 * alone, or `arg0`..`argN`. Anything else cannot be passed, so the call does not run. */
function unnamed(edited: Json, names: string[]): unknown[] {
  const keys = Object.keys(edited).sort();
  if (keys.length !== names.length || !names.every((n) => keys.includes(n))) {
    throw new ToolDeniedError(
      { effect: "DENY", reason_code: "APPROVAL_DENIED", reason: `the approved edit names arguments ${JSON.stringify(keys)} this call cannot take (it takes ${JSON.stringify(names)})`, action_id: null },
    );
  }
  return names.map((n) => edited[n]);
}

function parseInput(input: string): Json {
  try {
    const parsed: unknown = JSON.parse(input || "{}");
    return parsed && typeof parsed === "object" && !Array.isArray(parsed) ? (parsed as Json) : { input: parsed };
  } catch {
    return { input };
  }
}

/**
 * `onDefer: "interrupt"` for OpenAI Agents JS: the tool's `needsApproval` asks the daemon, and a
 * DEFER becomes the SDK's own tool-approval interruption, which `settle(result)` approves or
 * rejects in the run state from the daemon's approval (a person's `faramesh approve`). When the
 * run resumes, the tool re-asks the daemon with the approval id and runs only on PERMIT
 * `APPROVAL_GRANTED`. A DENY never runs the tool (it throws, or calls `onDeny`).
 */
function pausingOpenAIAgentsTool(
  tool: { type: "function"; name: string; invoke: (ctx: unknown, input: string, details?: unknown) => Promise<unknown> },
  governor: Governor,
): unknown {
  const inner = tool.invoke.bind(tool);
  // call id -> the call and the decision needsApproval made, used once by the invocation
  const asked = new Map<string, { call: Json; decision: Decision }>();
  const contextOf = (ctx: unknown): Json | undefined => {
    const c = (ctx as { context?: Json } | undefined)?.context;
    return c && typeof c === "object" ? c : undefined;
  };
  return {
    ...tool,
    needsApproval: async (ctx: unknown, input: unknown, callId?: string) => {
      const args = input && typeof input === "object" ? (input as Json) : parseInput(String(input ?? ""));
      const call = governor.call(tool.name, args, contextOf(ctx));
      const decision = await governor.ask(call);
      if (callId) asked.set(callId, { call, decision });
      if (decision.effect === "DEFER" && callId) {
        PAUSED.set(callId, { governor, decision });
        return true;
      }
      return false;
    },
    invoke: async (ctx: unknown, input: string, details?: unknown) => {
      const callId = (details as { toolCall?: { callId?: string } } | undefined)?.toolCall?.callId;
      const paused = callId ? PAUSED.get(callId) : undefined;
      const seen = callId ? asked.get(callId) : undefined;
      if (callId) asked.delete(callId);
      let verdict: Verdict;
      if (paused && seen) {
        // Resumed after settle() approved it: the daemon must agree (the approval, used once).
        PAUSED.delete(callId!);
        const resumed = await governor.ask({ ...seen.call, approval_id: paused.decision.approval_id ?? paused.decision.defer_token });
        verdict = await governor.settle(seen.call, resumed.effect === "DEFER" ? { ...resumed, effect: "DENY" } : resumed);
      } else if (seen) {
        verdict = await governor.settle(seen.call, seen.decision);
      } else {
        verdict = await governor.gate(tool.name, parseInput(input), contextOf(ctx));
      }
      return verdict.run ? governor.checked(verdict.decision, await inner(ctx, input, details)) : verdict.value;
    },
  };
}

/**
 * For a run paused by `onDefer: "interrupt"`: waits (up to `timeoutMs` each) for the daemon's
 * approval of each of Faramesh's interruptions, approves or rejects it in the run's state, and
 * returns the state to resume with (`runner.run(agent, state)`). Other interruptions, and
 * approvals still pending at the timeout, are left as they are.
 */
export async function settle<S extends { approve(item: never): void; reject(item: never, options?: { message?: string }): void }>(
  result: { state: S; interruptions: unknown[] },
  timeoutMs = 300_000,
): Promise<S> {
  const state = result.state;
  for (const item of result.interruptions) {
    const callId = (item as { rawItem?: { callId?: string } }).rawItem?.callId;
    const paused = callId ? PAUSED.get(callId) : undefined;
    if (!paused) continue;
    const status = await paused.governor.transport.waitApproval(paused.decision, timeoutMs);
    if (status === "approved") state.approve(item as never);
    else if (status === "denied" || status === "expired") {
      PAUSED.delete(callId!);
      state.reject(item as never, {
        message: `Faramesh: approval ${String(paused.decision.approval_id)} was ${status}; the tool did not run.`,
      });
    }
  }
  return state;
}

/**
 * `onDefer: "interrupt"` for the Vercel AI SDK: the tool's `needsApproval` asks the daemon, and a
 * DEFER becomes the SDK's own `tool-approval-request` (generateText stops there);
 * `settleApprovals(result)` answers it from the daemon's approval (a person's `faramesh
 * approve`) as the `tool` message to send back. When the next `generateText` executes the
 * approved call, the tool re-asks the daemon with the approval id and runs only on PERMIT
 * `APPROVAL_GRANTED`. A DENY never runs the tool (it throws, or calls `onDeny`).
 */
function pausingAiSdkTool(tool: { execute?: (input: unknown, options: unknown) => unknown }, governor: Governor, name: string): unknown {
  const inner = tool.execute!.bind(tool);
  const asked = new Map<string, { call: Json; decision: Decision }>();
  const argsOf = (input: unknown): Json => (input && typeof input === "object" && !Array.isArray(input) ? (input as Json) : { input });
  const contextOf = (options: unknown): Json | undefined => {
    const c = (options as { experimental_context?: unknown } | undefined)?.experimental_context;
    return c && typeof c === "object" ? (c as Json) : undefined;
  };
  return {
    ...tool,
    needsApproval: async (input: unknown, options: { toolCallId?: string; experimental_context?: unknown }) => {
      // The SDK asks again when it executes an answered approval: the call is already paused.
      if (options?.toolCallId && PAUSED.has(options.toolCallId)) return true;
      const call = governor.call(name, argsOf(input), contextOf(options));
      const decision = await governor.ask(call);
      const callId = options?.toolCallId;
      if (callId) asked.set(callId, { call, decision });
      if (decision.effect === "DEFER" && callId) {
        PAUSED.set(callId, { governor, decision });
        return true;
      }
      return false;
    },
    execute: async (input: unknown, options: unknown) => {
      const callId = (options as { toolCallId?: string } | undefined)?.toolCallId;
      const paused = callId ? PAUSED.get(callId) : undefined;
      const seen = callId ? asked.get(callId) : undefined;
      if (callId) asked.delete(callId);
      let verdict: Verdict;
      if (paused) {
        // Approved by settleApprovals(): the daemon must agree (the approval, used once).
        PAUSED.delete(callId!);
        const call = seen?.call ?? governor.call(name, argsOf(input), contextOf(options));
        const resumed = await governor.ask({ ...call, approval_id: paused.decision.approval_id ?? paused.decision.defer_token });
        verdict = await governor.settle(call, resumed.effect === "DEFER" ? { ...resumed, effect: "DENY" } : resumed);
      } else if (seen) {
        verdict = await governor.settle(seen.call, seen.decision);
      } else {
        verdict = await governor.gate(name, argsOf(input), contextOf(options));
      }
      return verdict.run ? governor.checked(verdict.decision, await inner(input, options)) : verdict.value;
    },
  };
}

/**
 * For a `generateText` result stopped by `onDefer: "interrupt"`: waits (up to `timeoutMs` each)
 * for the daemon's approval of each of Faramesh's `tool-approval-request`s and returns the
 * `tool` message answering them (`tool-approval-response`, approved or not, with the reason),
 * to append after `result.response.messages` before calling `generateText` again. Other
 * approval requests, and approvals still pending at the timeout, are left out (unanswered).
 */
export async function settleApprovals(
  result: { content: readonly unknown[] },
  timeoutMs = 300_000,
): Promise<{ role: "tool"; content: { type: "tool-approval-response"; approvalId: string; approved: boolean; reason?: string }[] }> {
  const content: { type: "tool-approval-response"; approvalId: string; approved: boolean; reason?: string }[] = [];
  for (const part of result.content) {
    const p = part as { type?: string; approvalId?: string; toolCall?: { toolCallId?: string } };
    if (p.type !== "tool-approval-request" || !p.approvalId) continue;
    const callId = p.toolCall?.toolCallId;
    const paused = callId ? PAUSED.get(callId) : undefined;
    if (!paused) continue;
    const status = await paused.governor.transport.waitApproval(paused.decision, timeoutMs);
    if (status === "approved") {
      content.push({ type: "tool-approval-response", approvalId: p.approvalId, approved: true, reason: `Faramesh approval ${String(paused.decision.approval_id)}` });
    } else if (status === "denied" || status === "expired") {
      PAUSED.delete(callId!);
      content.push({
        type: "tool-approval-response",
        approvalId: p.approvalId,
        approved: false,
        reason: `Faramesh: approval ${String(paused.decision.approval_id)} was ${status}; the tool did not run.`,
      });
    }
  }
  return { role: "tool", content };
}

/** One tool, governed, as the same kind of thing. `name` names AI SDK tools (their record key). */
export function governTool<T>(tool: T, governor: Governor, name?: string): T {
  if (isLangChainTool(tool)) {
    const inner = tool._call.bind(tool);
    const governed = Object.create(tool) as typeof tool;
    governed._call = async (arg: unknown, runManager?: unknown, config?: unknown) => {
      const cfg = (config ?? {}) as Json;
      const args = arg && typeof arg === "object" ? (arg as Json) : { input: arg };
      const byObject = !!arg && typeof arg === "object";
      const verdict = await governor.gate(tool.name, args, { ...((cfg["configurable"] as Json) ?? {}), ...((cfg["metadata"] as Json) ?? {}) }, true);
      if (!verdict.run) return verdict.value;
      const out = verdict.args ? await inner(byObject ? verdict.args : unnamed(verdict.args, ["input"])[0], runManager, config) : await inner(arg, runManager, config);
      return governor.checked(verdict.decision, out);
    };
    return governed as T;
  }
  if (isOpenAIAgentsTool(tool) && governor.onDefer === "interrupt") return pausingOpenAIAgentsTool(tool, governor) as T;
  if (isAiSdkTool(tool) && governor.onDefer === "interrupt") {
    if (!name) throw new TypeError("an AI SDK tool is named by its key: pass the tools as a record");
    return pausingAiSdkTool(tool, governor, name) as T;
  }
  if (governor.onDefer === "interrupt") {
    throw new TypeError('onDefer: "interrupt" pauses OpenAI Agents runs and AI SDK tool loops; other tools take "throw", "wait" or a callback');
  }
  if (isOpenAIAgentsTool(tool)) {
    const inner = tool.invoke.bind(tool);
    return {
      ...tool,
      invoke: async (ctx: unknown, input: string, details?: unknown) => {
        let args: Json;
        try {
          const parsed: unknown = JSON.parse(input || "{}");
          args = parsed && typeof parsed === "object" && !Array.isArray(parsed) ? (parsed as Json) : { input: parsed };
        } catch {
          args = { input };
        }
        const context = (ctx as { context?: Json } | undefined)?.context;
        const verdict = await governor.gate(tool.name, args, context && typeof context === "object" ? context : undefined, true);
        if (!verdict.run) return verdict.value;
        return governor.checked(verdict.decision, await inner(ctx, verdict.args ? JSON.stringify(verdict.args) : input, details));
      },
    } as T;
  }
  if (isAiSdkTool(tool)) {
    if (!name) throw new TypeError("an AI SDK tool is named by its key: pass the tools as a record");
    const inner = tool.execute!.bind(tool);
    return {
      ...tool,
      execute: async (input: unknown, options: unknown) => {
        const args = input && typeof input === "object" ? (input as Json) : { input };
        const ctx = (options as { experimental_context?: Json } | undefined)?.experimental_context;
        const byObject = !!input && typeof input === "object";
        const verdict = await governor.gate(name, args, ctx, true);
        if (!verdict.run) return verdict.value;
        const out = verdict.args ? await inner(byObject ? verdict.args : unnamed(verdict.args, ["input"])[0], options) : await inner(input, options);
        return governor.checked(verdict.decision, out);
      },
    } as T;
  }
  if (typeof tool === "function") {
    const fn = tool as unknown as AnyFn;
    const toolName = name ?? fn.name;
    if (!toolName) throw new TypeError("a governed function needs a name (use a named function)");
    const governed = async (...args: unknown[]) => {
      const oneObject = args.length === 1 && !!args[0] && typeof args[0] === "object" && !Array.isArray(args[0]);
      const byName: Json = oneObject ? (args[0] as Json) : Object.fromEntries(args.map((a, i) => [`arg${i}`, a]));
      const verdict = await governor.gate(toolName, byName, undefined, true);
      if (!verdict.run) return verdict.value;
      // An approver's edit, in the shape the function was called with.
      const edited = verdict.args ? (oneObject ? [verdict.args] : unnamed(verdict.args, args.map((_, i) => `arg${i}`))) : args;
      return governor.checked(verdict.decision, await (fn as (...a: unknown[]) => unknown)(...edited));
    };
    Object.defineProperty(governed, "name", { value: toolName });
    return governed as unknown as T;
  }
  throw new TypeError("cannot govern this: pass a function, an AI SDK tool, a LangChain.js tool or an OpenAI Agents tool");
}

/**
 * Your tools, each asking the daemon before it runs, in the shape your framework expects: an
 * array (functions, LangChain.js tools, OpenAI Agents tools) stays an array; a record of AI SDK
 * tools (`{ weather: tool({...}) }`) stays a record with the same keys.
 */
export function governedTools<const T extends readonly unknown[] | Record<string, unknown>>(tools: T, options: GovernOptions = {}): T {
  const governor = new Governor(options);
  if (Array.isArray(tools)) return tools.map((t) => governTool(t, governor)) as unknown as T;
  const out: Record<string, unknown> = {};
  for (const [key, t] of Object.entries(tools)) out[key] = governTool(t, governor, key);
  return out as T;
}

/** Decide-only checks, execute-if-allowed, and the v1 actions client. */
import type { Decision } from "./errors.js";
import { jsonable } from "./governed.js";
import { FarameshTimeoutError, UnauthorizedError } from "./errors.js";
import { HttpTransport, type Json, type Transport, V1_OUTCOME, defaultTransport } from "./transport.js";

export interface CallInput {
  agentId?: string;
  tool: string;
  operation: string;
  params?: Json;
  context?: Json;
}


/** The call body; `agentId` defaults to `context.agent_id`, then FARAMESH_AGENT_ID. */
export function buildCall(input: CallInput): Json {
  const context = { ...(input.context ?? {}) };
  const agent = input.agentId ?? (context["agent_id"] as string | undefined) ?? process.env["FARAMESH_AGENT_ID"];
  if (!agent) throw new TypeError("agentId is required (or context.agent_id, or FARAMESH_AGENT_ID)");
  const call: Json = { agent_id: String(agent), tool: input.tool, operation: input.operation, args: { ...(input.params ?? {}) }, context };
  const principalToken = process.env["FARAMESH_PRINCIPAL_TOKEN"];
  if (principalToken) call["principal_token"] = principalToken;
  return call;
}

export interface GateDecision {
  outcome: "EXECUTE" | "HALT" | "ABSTAIN";
  effect: Decision["effect"];
  reasonCode: string;
  reason: string | null;
  requestHash: string;
  policyHash: string | null;
  ruleId: string | null;
  ruleRef: string | null;
  riskLevel: string | null;
}

function gateDecision(d: Decision): GateDecision {
  return {
    outcome: (V1_OUTCOME[d.effect] ?? "HALT") as GateDecision["outcome"],
    effect: d.effect,
    reasonCode: d.reason_code,
    reason: d.reason ?? null,
    requestHash: d.request_hash ?? "",
    policyHash: d.policy_hash ?? null,
    ruleId: d.rule_id ?? null,
    ruleRef: d.rule_ref ?? null,
    riskLevel: d.risk_level ?? null,
  };
}

/** What the gate would decide, recorded nowhere, executing nothing. */
export async function gateDecide(input: CallInput, transport: Transport = defaultTransport()): Promise<GateDecision> {
  return gateDecision(await transport.decide(buildCall(input)));
}

export interface ExecuteResult<R> {
  decision: Decision;
  outcome: GateDecision["outcome"];
  actionId: string | null;
  executed: boolean;
  result?: R;
  error?: string;
}

/**
 * Records the decision (`govern`) and runs `executor(params)` only on PERMIT, reporting its start
 * and result so the action ends `succeeded` or `failed` in the log.
 */
export async function executeIfAllowed<R>(
  input: CallInput,
  executor: (params: Json) => R | Promise<R>,
  transport: Transport = defaultTransport(),
): Promise<ExecuteResult<R>> {
  const call = buildCall(input);
  const decision = await transport.govern(call);
  const out: ExecuteResult<R> = {
    decision,
    outcome: gateDecision(decision).outcome,
    actionId: decision.action_id ?? null,
    executed: false,
  };
  if (out.outcome !== "EXECUTE") return out;
  const id = decision.action_id;
  if (id) await transport.startAction(id);
  try {
    out.result = await executor(call["args"] as Json);
    out.executed = true;
    if (id) await transport.reportResult(id, true, jsonable(out.result));
  } catch (e) {
    out.error = e instanceof Error ? e.message : String(e);
    if (id) await transport.reportResult(id, false, undefined, out.error);
  }
  return out;
}

/** Decides and records an action; the v1 action (`id`, `status`, `decision`, ...). */
export function submitAction(input: CallInput, transport: Transport = defaultTransport()): Promise<Json> {
  return transport.submitAction(buildCall(input));
}

export function getAction(id: string, transport: Transport = defaultTransport()): Promise<Json> {
  return transport.getAction(id);
}

export function listActions(
  filters: { status?: string; limit?: number; agent_id?: string; tool?: string; offset?: number } = {},
  transport: Transport = defaultTransport(),
): Promise<Json[]> {
  return transport.listActions(filters);
}

/** Approves an action's pending approval (approver credentials: root, the daemon's uid or a
 * listed approver over the socket; an approver token over HTTP). */
export function approveAction(id: string, reason?: string, transport: Transport = defaultTransport()): Promise<Json> {
  return transport.decideApproval(id, true, reason);
}

/** Denies an action's pending approval (approver credentials, as for `approveAction`). */
export function denyAction(id: string, reason?: string, transport: Transport = defaultTransport()): Promise<Json> {
  return transport.decideApproval(id, false, reason);
}

export function startAction(id: string, transport: Transport = defaultTransport()): Promise<Json> {
  return transport.startAction(id);
}

/** Reports the outcome; an action still `allowed` or `approved` is started first. */
export async function reportResult(
  id: string,
  outcome: { success: boolean; result?: unknown; error?: string },
  transport: Transport = defaultTransport(),
): Promise<Json> {
  const status = (await transport.getAction(id))["status"];
  if (status === "allowed" || status === "approved") await transport.startAction(id);
  return transport.reportResult(id, outcome.success, jsonable(outcome.result), outcome.error);
}

/** The action's timeline: `created`, `decision_made`, then approvals, start and result. */
export function getEvents(id: string, transport: Transport = defaultTransport()): Promise<Json[]> {
  return transport.getEvents(id);
}

/** What `ExecutionGovernorClient.submitAction` takes: the upstream SDK's spelling
 * (`context.agent_id`, or `agent_id`) as well as ours (`agentId`). */
export interface ActionInput {
  tool: string;
  operation: string;
  params?: Json;
  context?: Json;
  agentId?: string;
  agent_id?: string;
}

const TERMINAL = new Set(["succeeded", "failed", "denied"]);

/**
 * The upstream SDK's class-based client of the action API: `new ExecutionGovernorClient(url)`
 * talks HTTP(S) to that daemon (token from `apiKey`, else `FARAMESH_API_KEY`/`FARAMESH_TOKEN`);
 * without a URL, `FARAMESH_URL`, else the environment's transport (the socket). The same
 * concepts as the Python SDK's `ExecutionGovernorClient`, in this language's spelling.
 */
export class ExecutionGovernorClient {
  readonly transport: Transport;

  constructor(baseUrl?: string, apiKey?: string, options: { transport?: Transport; timeoutMs?: number } = {}) {
    const url = baseUrl ?? process.env["FARAMESH_URL"] ?? process.env["FARAMESH_BASE_URL"];
    if (options.transport) this.transport = options.transport;
    else if (url) {
      const token = apiKey ?? process.env["FARAMESH_API_KEY"];
      this.transport = new HttpTransport(url, { ...(token ? { token } : {}), ...(options.timeoutMs ? { timeoutMs: options.timeoutMs } : {}) });
    } else this.transport = defaultTransport();
  }

  /** Decides and records an action; the v1 action (`id`, `status`, `decision`, `risk_level`, ...). */
  submitAction(input: ActionInput): Promise<Json> {
    const { agent_id, ...rest } = input;
    return this.transport.submitAction(buildCall({ ...rest, ...(rest.agentId ?? agent_id ? { agentId: rest.agentId ?? agent_id } : {}) }));
  }

  getAction(id: string): Promise<Json> {
    return this.transport.getAction(id);
  }

  listActions(filters: { status?: string; limit?: number; agent_id?: string; tool?: string; offset?: number } = {}): Promise<Json[]> {
    return this.transport.listActions(filters);
  }

  /** The action's timeline. */
  getEvents(id: string): Promise<Json[]> {
    return this.transport.getEvents(id);
  }

  private async decideApproval(id: string, approve: boolean, reason?: string): Promise<Json> {
    try {
      return await this.transport.decideApproval(id, approve, reason);
    } catch (e) {
      if (e instanceof UnauthorizedError) {
        throw new UnauthorizedError(`${e.message}; approving takes an approver token (FARAMESH_APPROVER_TOKEN on the daemon) or an approver's uid on the socket`);
      }
      throw e;
    }
  }

  approveAction(id: string, reason?: string): Promise<Json> {
    return this.decideApproval(id, true, reason);
  }

  rejectAction(id: string, reason?: string): Promise<Json> {
    return this.decideApproval(id, false, reason);
  }

  startAction(id: string): Promise<Json> {
    return this.transport.startAction(id);
  }

  /** Reports the outcome; an action still `allowed` or `approved` is started first. */
  reportResult(id: string, success: boolean, result?: unknown, error?: string): Promise<Json> {
    return reportResult(id, { success, ...(result !== undefined ? { result } : {}), ...(error !== undefined ? { error } : {}) }, this.transport);
  }

  /** Polls until the action is `succeeded`, `failed` or `denied`. */
  async waitForCompletion(id: string, timeoutMs = 60_000, pollMs = 1_000): Promise<Json> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const action = await this.transport.getAction(id);
      if (TERMINAL.has(String(action["status"]))) return action;
      if (Date.now() >= deadline) throw new FarameshTimeoutError(`action ${id} is still \`${String(action["status"])}\` after ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, pollMs));
    }
  }

  /** What the gate would decide, recorded nowhere. */
  gateDecide(input: ActionInput): Promise<GateDecision> {
    const { agent_id, ...rest } = input;
    return gateDecide({ ...rest, ...(rest.agentId ?? agent_id ? { agentId: rest.agentId ?? agent_id } : {}) }, this.transport);
  }

  close(): void {
    this.transport.close();
  }
}

/** Decide-only checks, execute-if-allowed, and the v1 actions client. */
import type { Decision } from "./errors.js";
import { jsonable } from "./governed.js";
import { type Json, type Transport, V1_OUTCOME, defaultTransport } from "./transport.js";

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

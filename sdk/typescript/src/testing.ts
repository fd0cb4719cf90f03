/**
 * Test your wiring without a daemon: `new StubTransport({ search_docs: "permit" })`, or a function
 * that gets the call and returns an effect or a decision. Tools it does not name are denied
 * (`DEFAULT_DENY_NO_MATCH`), as the daemon would. DEFERs create approvals settled with
 * `approve(id)` / `deny(id)`.
 */
import { requestHash } from "./canonical.js";
import { type Decision, NotFoundError } from "./errors.js";
import { type Json, type Transport, V1_OUTCOME } from "./transport.js";

type Effect = "permit" | "deny" | "defer";
export type StubRule = Record<string, Effect> | ((call: Json) => Effect | Partial<Decision>);

const CODES = { PERMIT: "POLICY_PERMIT", DENY: "POLICY_DENY", DEFER: "POLICY_DEFER" } as const;

export class StubTransport implements Transport {
  readonly kind = "stub" as const;
  readonly target = "stub";
  /** Every call governed or decided, in order. */
  readonly calls: Json[] = [];
  private readonly actions = new Map<string, Json>();
  private readonly approvals = new Map<string, string>();
  private n = 0;

  constructor(private readonly rules: StubRule) {}

  private decision(call: Json): Decision {
    const tool = String(call["tool"]);
    const base: Decision = {
      effect: "DENY",
      reason_code: "DEFAULT_DENY_NO_MATCH",
      reason: `the stub has no rule for \`${tool}\``,
      rule_id: null,
      rule_ref: null,
      risk_level: "low",
      request_hash: requestHash(String(call["agent_id"]), tool, String(call["operation"] ?? "invoke"), (call["args"] ?? {}) as Json, (call["context"] ?? {}) as Json),
      policy_hash: "stub",
      approval_id: null,
      defer_token: null,
    };
    let effect: string | undefined;
    if (typeof this.rules === "function") {
      const out = this.rules(call);
      if (typeof out === "object") return { ...base, ...out } as Decision;
      effect = out;
    } else {
      effect = this.rules[tool];
    }
    const upper = effect?.toUpperCase() as keyof typeof CODES | undefined;
    if (upper && upper in CODES) Object.assign(base, { effect: upper, reason_code: CODES[upper], reason: `stub: ${effect}` });
    return base;
  }

  private withDenial(d: Decision): Decision {
    if (d.effect === "PERMIT") return { ...d, structured_denial: null };
    const resolution = d.effect === "DEFER" ? { type: "pending_approval", approval_id: d.approval_id } : { type: "rule_block", rule_id: d.rule_id ?? null };
    return { ...d, structured_denial: { code: d.reason_code, rule_id: d.rule_id ?? null, rule_ref: d.rule_ref ?? null, human_message: d.reason ?? null, resolution } };
  }

  async govern(call: Json): Promise<Decision> {
    this.calls.push(call);
    let d = this.decision(call);
    const resume = call["approval_id"] as string | undefined;
    if (resume) {
      const status = this.approvals.get(resume);
      if (status === "approved") {
        d = { ...d, effect: "PERMIT", reason_code: "APPROVAL_GRANTED", reason: "approved" };
        this.approvals.set(resume, "used");
      } else if (status === "pending") d = { ...d, effect: "DEFER", reason_code: "POLICY_DEFER", approval_id: resume };
      else d = { ...d, effect: "DENY", reason_code: "APPROVAL_DENIED", reason: `approval ${String(status)}` };
    } else if (d.effect === "DEFER") {
      d.approval_id = `approval${String(++this.n).padStart(24, "0")}`;
      this.approvals.set(d.approval_id, "pending");
    }
    d.defer_token = d.effect === "DEFER" ? d.approval_id ?? null : null;
    d.action_id = `stub${String(++this.n).padStart(12, "0")}`;
    const out = this.withDenial(d);
    const status =
      d.reason_code === "APPROVAL_GRANTED"
        ? "approved"
        : ({ PERMIT: "allowed", DENY: "denied", DEFER: "pending_approval" } as const)[d.effect];
    // Kept in the v1 action shape the daemon answers with.
    this.actions.set(d.action_id, {
      id: d.action_id,
      agent_id: call["agent_id"],
      tool: call["tool"],
      operation: call["operation"],
      params: call["args"] ?? {},
      context: call["context"] ?? {},
      ...out,
      status,
      decision: ({ PERMIT: "allow", DENY: "deny", DEFER: "require_approval" } as const)[d.effect],
      outcome: V1_OUTCOME[d.effect],
      provenance_id: d.action_id,
    });
    return out;
  }

  async decide(call: Json): Promise<Decision> {
    this.calls.push(call);
    return this.withDenial({ ...this.decision(call), action_id: null });
  }

  approve(approvalId: string): void {
    this.settle(approvalId, "approved");
  }

  deny(approvalId: string): void {
    this.settle(approvalId, "denied");
  }

  private settle(approvalId: string, status: string): void {
    if (this.approvals.get(approvalId) !== "pending") throw new NotFoundError(`no pending approval \`${approvalId}\``);
    this.approvals.set(approvalId, status);
    for (const a of this.actions.values()) if (a["approval_id"] === approvalId) a["status"] = status;
  }

  async waitApproval(decision: Decision, timeoutMs: number): Promise<string> {
    const id = String(decision.approval_id);
    const deadline = Date.now() + timeoutMs;
    while (this.approvals.get(id) === "pending" && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    const status = this.approvals.get(id) ?? "denied";
    return status === "used" ? "approved" : status;
  }

  async getAction(id: string): Promise<Json> {
    const a = this.actions.get(id);
    if (!a) throw new NotFoundError(`no action \`${id}\``);
    return { ...a };
  }

  async listActions(): Promise<Json[]> {
    return [...this.actions.values()].reverse().map((a) => ({ ...a }));
  }

  async submitAction(call: Json): Promise<Json> {
    const d = await this.govern(call);
    return this.getAction(String(d.action_id));
  }

  async decideApproval(id: string, approve: boolean): Promise<Json> {
    const a = this.actions.get(id);
    if (!a) throw new NotFoundError(`no action \`${id}\``);
    const approvalId = String(a["approval_id"]);
    this.settle(approvalId, approve ? "approved" : "denied");
    return { approval_id: approvalId, status: approve ? "approved" : "denied" };
  }

  async getEvents(id: string): Promise<Json[]> {
    const a = await this.getAction(id);
    const at = new Date().toISOString();
    return [
      { id: `${id}-created`, action_id: id, event_type: "created", meta: {}, created_at: at },
      { id: `${id}-decided`, action_id: id, event_type: "decision_made", meta: { decision: a["decision"] }, created_at: at },
    ];
  }

  async startAction(id: string): Promise<Json> {
    this.status(id, "executing");
    return this.getAction(id);
  }

  async reportResult(id: string, success: boolean): Promise<Json> {
    this.status(id, success ? "succeeded" : "failed");
    return this.getAction(id);
  }

  private status(id: string, status: string): void {
    const a = this.actions.get(id);
    if (!a) throw new NotFoundError(`no action \`${id}\``);
    a["status"] = status;
  }

  close(): void {}
}

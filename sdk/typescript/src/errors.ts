/** Errors the SDK throws, and the typed resolutions a denial carries. */

export class FarameshError extends Error {
  override name = "FarameshError";
}

/** The daemon could not be reached (socket missing, connection refused or lost). */
export class DaemonUnreachableError extends FarameshError {
  override name = "DaemonUnreachableError";
}

/** The daemon did not answer in time. */
export class FarameshTimeoutError extends FarameshError {
  override name = "FarameshTimeoutError";
}

/** Missing or unknown token (HTTP 401), or not allowed (403, JSON-RPC -32001). */
export class UnauthorizedError extends FarameshError {
  override name = "UnauthorizedError";
}

/** The daemon refused the request's shape; `field` names the field at fault when known. */
export class InvalidRequestError extends FarameshError {
  override name = "InvalidRequestError";
  constructor(
    message: string,
    readonly field?: string,
  ) {
    super(message);
  }
}

/** No such action (or not the caller's). */
export class NotFoundError extends FarameshError {
  override name = "NotFoundError";
}

/** Wrong state for this (already decided, not executing). */
export class ConflictError extends FarameshError {
  override name = "ConflictError";
}

export type Resolution =
  | { type: "pending_approval"; approvalId: string | null }
  | { type: "retry_after"; retryAfterSeconds: number }
  | { type: "budget_reset"; resetsAt: string | null }
  | { type: "rule_block"; ruleId: string | null };

/** A decision as the daemon returns it (`govern`, `decide`, `POST /v1/evaluate`). */
export interface Decision {
  effect: "PERMIT" | "DENY" | "DEFER";
  reason_code: string;
  /** A PERMIT whose result a `results:` rule reads: the result goes to the daemon first. */
  check_result?: boolean;
  reason?: string | null;
  rule_id?: string | null;
  rule_ref?: string | null;
  risk_level?: string;
  request_hash?: string;
  policy_hash?: string;
  action_id?: string | null;
  approval_id?: string | null;
  defer_token?: string | null;
  structured_denial?: {
    code?: string;
    rule_id?: string | null;
    rule_ref?: string | null;
    human_message?: string | null;
    resolution?: Record<string, unknown> | null;
  } | null;
  [key: string]: unknown;
}

export function parseResolution(raw: unknown): Resolution | null {
  if (!raw || typeof raw !== "object") return null;
  const r = raw as Record<string, unknown>;
  switch (r["type"]) {
    case "pending_approval":
      return { type: "pending_approval", approvalId: (r["approval_id"] as string | null) ?? null };
    case "retry_after":
      return { type: "retry_after", retryAfterSeconds: Number(r["retry_after_seconds"] ?? 0) };
    case "budget_reset":
      return { type: "budget_reset", resetsAt: (r["resets_at"] as string | null) ?? null };
    case "rule_block":
      return { type: "rule_block", ruleId: (r["rule_id"] as string | null) ?? null };
    default:
      return null;
  }
}

/** A governed tool call was not permitted: DENY, or a DEFER not (yet) approved. */
export class ToolDeniedError extends Error {
  override name = "ToolDeniedError";
  readonly code: string;
  readonly humanMessage: string;
  readonly effect: string;
  readonly ruleId: string | null;
  readonly ruleRef: string | null;
  readonly resolution: Resolution | null;
  readonly approvalId: string | null;
  readonly actionId: string | null;
  readonly decision: Decision;

  constructor(decision: Decision, humanMessage?: string) {
    const denial = decision.structured_denial ?? {};
    const code = String(denial.code ?? decision.reason_code ?? "DENIED");
    const message = humanMessage ?? String(denial.human_message ?? decision.reason ?? "");
    super(message ? `${code}: ${message}` : code);
    this.code = code;
    this.humanMessage = message;
    this.effect = decision.effect;
    this.ruleId = (denial.rule_id ?? decision.rule_id ?? null) as string | null;
    this.ruleRef = (denial.rule_ref ?? decision.rule_ref ?? null) as string | null;
    this.resolution = parseResolution(denial.resolution);
    const pending = this.resolution?.type === "pending_approval" ? this.resolution.approvalId : null;
    this.approvalId = decision.approval_id ?? pending ?? null;
    this.actionId = decision.action_id ?? null;
    this.decision = decision;
  }

  /** The structured denial, JSON-ready (what a model is shown). */
  toJSON(): Record<string, unknown> {
    return {
      denied: true,
      effect: this.effect,
      code: this.code,
      human_message: this.humanMessage,
      rule_id: this.ruleId,
      rule_ref: this.ruleRef,
      resolution: this.resolution,
      approval_id: this.approvalId,
      action_id: this.actionId,
    };
  }
}

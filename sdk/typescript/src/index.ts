/**
 * @faramesh/sdk: every tool call an agent makes is decided by the Faramesh daemon before it runs.
 *
 *   import { governedTools } from "@faramesh/sdk";
 *   const tools = governedTools({ weather, refund }, { agentId: "payments-bot" });
 */
export { canonicalJson, requestHash } from "./canonical.js";
export {
  ConflictError,
  DaemonUnreachableError,
  type Decision,
  FarameshError,
  FarameshTimeoutError,
  InvalidRequestError,
  NotFoundError,
  type Resolution,
  ToolDeniedError,
  UnauthorizedError,
} from "./errors.js";
export {
  type ActionInput,
  type CallInput,
  ExecutionGovernorClient,
  type ExecuteResult,
  type GateDecision,
  approveAction,
  denyAction,
  executeIfAllowed,
  gateDecide,
  getAction,
  getEvents,
  listActions,
  reportResult,
  startAction,
  submitAction,
} from "./client.js";
export { type DenialCallback, type GovernOptions, Governor, governTool, governedTools, reportDenial, settle, settleApprovals } from "./governed.js";
export { type Level, type Logger, setLogger } from "./log.js";
export {
  DEFAULT_SOCKET,
  HttpTransport,
  type Json,
  SocketTransport,
  type Transport,
  autoTransport,
  defaultTransport,
} from "./transport.js";

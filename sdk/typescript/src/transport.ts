/**
 * How the SDK talks to the daemon: the Unix socket (JSON-RPC, one message per line) or HTTP(S).
 * Selection (`autoTransport`), as the Python SDK: FARAMESH_REMOTE_URL (HTTPS POST /v1/evaluate),
 * FARAMESH_SOCKET, FARAMESH_BASE_URL / FARAMESH_URL (the v1 API), then the default socket.
 */
import { readFileSync } from "node:fs";
import * as http from "node:http";
import * as https from "node:https";
import * as net from "node:net";
import { homedir } from "node:os";
import { join } from "node:path";

import {
  ConflictError,
  DaemonUnreachableError,
  type Decision,
  FarameshError,
  FarameshTimeoutError,
  InvalidRequestError,
  NotFoundError,
  UnauthorizedError,
} from "./errors.js";
import { log } from "./log.js";

export type Json = Record<string, unknown>;

/** What waiting for an approval ended with: its status, and the approver's edit if any. */
export interface Waited {
  status: string;
  edit: Json | null;
}

function editOf(v: unknown): Json | null {
  return v && typeof v === "object" && !Array.isArray(v) ? (v as Json) : null;
}

/** What every transport offers, so everything above it is written once. */
export interface Transport {
  readonly kind: "socket" | "http" | "stub";
  readonly target: string;
  /** Decide and record a call. */
  govern(call: Json): Promise<Decision>;
  /** The decision, recorded nowhere. */
  decide(call: Json): Promise<Decision>;
  /** Waits for a DEFER's approval: "approved" | "denied" | "expired" | "pending" (timed out). */
  waitApproval(decision: Decision, timeoutMs: number): Promise<string>;
  /** `waitApproval`, with the approver's edit (`{params, ...}`) when the call was approved with
   * changed arguments. Optional for other transports: without it, no edit is seen (a resume
   * with the original arguments is then refused by the daemon). */
  waitForApproval?(decision: Decision, timeoutMs: number): Promise<Waited>;
  /** Has the daemon's `results:` rules read a permitted call's result: `{verdict, result,
   * rule_id, reason, findings}` (`result` is what to hand on; none for `deny`). */
  checkResult?(actionId: string, result: unknown): Promise<Json>;
  getAction(id: string): Promise<Json>;
  listActions(filters?: Json): Promise<Json[]>;
  submitAction(call: Json): Promise<Json>;
  /** Approves or denies the pending approval of an action (approver credentials only). */
  decideApproval(id: string, approve: boolean, reason?: string): Promise<Json>;
  startAction(id: string): Promise<Json>;
  reportResult(id: string, success: boolean, result?: unknown, error?: string): Promise<Json>;
  /** The action's timeline (v1 events: `created`, `decision_made`, `approved`, `started`, ...). */
  getEvents(id: string): Promise<Json[]>;
  close(): void;
}

export const DEFAULT_SOCKET = join(homedir(), ".faramesh", "runtime", "faramesh.sock");

/** The upstream SDK's `outcome` of each effect. */
export const V1_OUTCOME: Record<string, string> = { PERMIT: "EXECUTE", DENY: "HALT", DEFER: "ABSTAIN" };

function rpcError(error: Json, method: string): Error {
  const code = error["code"];
  const message = String(error["message"] ?? "error");
  const data = (error["data"] ?? {}) as Json;
  switch (code) {
    case -32602:
      return new InvalidRequestError(message, data["field"] as string | undefined);
    case -32001:
      return new UnauthorizedError(message);
    case -32002:
      return new NotFoundError(message);
    case -32003:
      return new ConflictError(message);
    default:
      return new FarameshError(`${method}: ${message} (code ${String(code)})`);
  }
}

interface Waiter {
  resolve: (reply: Json) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
}

/**
 * JSON-RPC over the daemon's Unix socket: one persistent connection, shared by every caller
 * (requests are pipelined and answered by id), reconnected after a daemon restart.
 */
export class SocketTransport implements Transport {
  readonly kind = "socket" as const;
  readonly target: string;
  private conn: net.Socket | null = null;
  private connecting: Promise<net.Socket> | null = null;
  private buffer = "";
  private nextId = 1;
  private everConnected = false;
  private readonly waiting = new Map<number, Waiter>();

  constructor(
    readonly path: string = process.env["FARAMESH_SOCKET"] || DEFAULT_SOCKET,
    readonly timeoutMs = 10_000,
  ) {
    this.target = path;
  }

  private connect(): Promise<net.Socket> {
    if (this.conn && !this.conn.destroyed) return Promise.resolve(this.conn);
    if (this.connecting) return this.connecting;
    this.connecting = new Promise<net.Socket>((resolve, reject) => {
      const sock = net.createConnection(this.path);
      sock.setEncoding("utf8");
      sock.once("connect", () => {
        log("info", `faramesh: ${this.everConnected ? "reconnected to" : "connected to"} socket ${this.path}`);
        this.everConnected = true;
        this.conn = sock;
        this.buffer = "";
        this.connecting = null;
        sock.unref();
        resolve(sock);
      });
      sock.on("data", (chunk: string) => this.onData(chunk));
      sock.once("error", (e: NodeJS.ErrnoException) => {
        if (this.connecting) {
          this.connecting = null;
          reject(
            new DaemonUnreachableError(
              `cannot reach the faramesh daemon at \`${this.path}\` (${e.code ?? e.message}); start it with ` +
                "`faramesh dev` or `faramesh serve`, or set FARAMESH_SOCKET to its socket",
            ),
          );
        }
      });
      sock.once("close", () => this.onClose(sock));
    });
    return this.connecting;
  }

  private onData(chunk: string): void {
    this.buffer += chunk;
    let nl: number;
    while ((nl = this.buffer.indexOf("\n")) >= 0) {
      const line = this.buffer.slice(0, nl);
      this.buffer = this.buffer.slice(nl + 1);
      let msg: Json;
      try {
        msg = JSON.parse(line) as Json;
      } catch {
        continue;
      }
      const waiter = this.waiting.get(msg["id"] as number);
      if (waiter) {
        this.waiting.delete(msg["id"] as number);
        clearTimeout(waiter.timer);
        waiter.resolve(msg);
      }
    }
    this.refresh();
  }

  private onClose(sock: net.Socket): void {
    if (this.conn === sock) this.conn = null;
    const lost = [...this.waiting.values()];
    this.waiting.clear();
    for (const w of lost) {
      clearTimeout(w.timer);
      w.reject(new DaemonUnreachableError("the daemon closed the connection"));
    }
  }

  /** Keep the process alive only while replies are awaited. */
  private refresh(): void {
    if (!this.conn) return;
    if (this.waiting.size > 0) this.conn.ref();
    else this.conn.unref();
  }

  private async send(method: string, params: Json, timeoutMs: number): Promise<Json> {
    const sock = await this.connect();
    const id = this.nextId++;
    return new Promise<Json>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(id);
        this.refresh();
        reject(new FarameshTimeoutError(`the daemon at \`${this.path}\` did not answer \`${method}\` within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiting.set(id, { resolve, reject, timer });
      this.refresh();
      sock.write(JSON.stringify({ jsonrpc: "2.0", id, method, params }) + "\n", (err) => {
        if (err) {
          this.waiting.delete(id);
          clearTimeout(timer);
          reject(new DaemonUnreachableError(`cannot send: ${err.message}`));
        }
      });
    });
  }

  /** One call; the `result`, or the mapped error. A connection lost before the reply is
   * retried once on a new connection. */
  async call(method: string, params: Json, timeoutMs = this.timeoutMs): Promise<unknown> {
    for (let attempt = 1; ; attempt++) {
      let reply: Json;
      try {
        reply = await this.send(method, params, timeoutMs);
      } catch (e) {
        if (e instanceof DaemonUnreachableError && attempt === 1 && this.everConnected) {
          log("warn", `faramesh: lost the connection during \`${method}\`; retrying once`);
          continue;
        }
        throw e;
      }
      if (reply["error"]) throw rpcError(reply["error"] as Json, method);
      return reply["result"];
    }
  }

  async govern(call: Json): Promise<Decision> {
    return (await this.call("govern", call)) as Decision;
  }

  async decide(call: Json): Promise<Decision> {
    return (await this.call("decide", call)) as Decision;
  }

  async waitApproval(decision: Decision, timeoutMs: number): Promise<string> {
    return (await this.waitForApproval(decision, timeoutMs)).status;
  }

  async waitForApproval(decision: Decision, timeoutMs: number): Promise<Waited> {
    const approvalId = decision.approval_id ?? decision.defer_token;
    if (!approvalId) throw new InvalidRequestError("the decision has no approval_id to wait for", "approval_id");
    const seconds = Math.max(0, Math.min(timeoutMs / 1000, 3600));
    const approval = (await this.call(
      "approval.wait",
      { approval_id: approvalId, timeout_seconds: seconds },
      timeoutMs + this.timeoutMs,
    )) as Json;
    if (approval["timed_out"]) return { status: "pending", edit: null };
    return { status: String(approval["status"]), edit: editOf(approval["edit"]) };
  }

  async getAction(id: string): Promise<Json> {
    return (await this.call("action.get", { id, format: "v1" })) as Json;
  }

  async listActions(filters: Json = {}): Promise<Json[]> {
    const params = Object.fromEntries(Object.entries(filters).filter(([, v]) => v !== undefined && v !== null));
    const reply = (await this.call("action.list", { ...params, format: "v1" })) as Json;
    return (reply["actions"] ?? []) as Json[];
  }

  async submitAction(call: Json): Promise<Json> {
    // The daemon answers with the v1 action, as POST /v1/actions does.
    return (await this.call("action.submit", call)) as Json;
  }

  async checkResult(actionId: string, result: unknown): Promise<Json> {
    return (await this.call("result.check", { action_id: actionId, result })) as Json;
  }

  async decideApproval(id: string, approve: boolean, reason?: string): Promise<Json> {
    const action = (await this.call("action.get", { id })) as Json;
    const approvalId = action["approval_id"];
    if (!approvalId) throw new ConflictError(`action \`${id}\` awaits no approval`);
    const params: Json = { approval_id: approvalId };
    if (reason !== undefined) params["reason"] = reason;
    return (await this.call(approve ? "approval.approve" : "approval.deny", params)) as Json;
  }

  async startAction(id: string): Promise<Json> {
    return (await this.call("action.start", { id, format: "v1" })) as Json;
  }

  async getEvents(id: string): Promise<Json[]> {
    return (await this.call("action.events", { id, format: "v1" })) as Json[];
  }

  async reportResult(id: string, success: boolean, result?: unknown, error?: string): Promise<Json> {
    const params: Json = { id, success, format: "v1" };
    if (result !== undefined) params["result"] = result;
    if (error !== undefined) params["error"] = error;
    return (await this.call("action.result", params)) as Json;
  }

  close(): void {
    this.conn?.destroy();
    this.conn = null;
  }
}

/**
 * The daemon's HTTP(S) listener: `POST /v1/evaluate` to govern, the v1 actions API for the rest.
 * Keep-alive connections (node:http/https). `ca` (or FARAMESH_CA_CERT) trusts a self-signed
 * certificate, e.g. `<state dir>/tls/cert.pem`.
 */
export class HttpTransport implements Transport {
  readonly kind = "http" as const;
  readonly target: string;
  private readonly url: URL;
  private readonly agent: http.Agent;
  readonly token: string | undefined;

  constructor(
    url: string,
    options: { token?: string; timeoutMs?: number; ca?: string } = {},
  ) {
    try {
      this.url = new URL(url);
    } catch {
      throw new InvalidRequestError(`\`${url}\` is not an http(s) URL`, "url");
    }
    if (this.url.protocol !== "http:" && this.url.protocol !== "https:") {
      throw new InvalidRequestError(`\`${url}\` is not an http(s) URL`, "url");
    }
    this.target = url.replace(/\/$/, "");
    this.token = options.token ?? envToken();
    this.timeoutMs = options.timeoutMs ?? 10_000;
    const caFile = options.ca ?? process.env["FARAMESH_CA_CERT"];
    this.agent =
      this.url.protocol === "https:"
        ? new https.Agent({ keepAlive: true, ...(caFile ? { ca: readFileSync(caFile) } : {}) })
        : new http.Agent({ keepAlive: true });
  }

  readonly timeoutMs: number;

  request(method: string, path: string, body?: unknown): Promise<unknown> {
    const data = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const headers: Record<string, string> = { Accept: "application/json" };
    if (data) {
      headers["Content-Type"] = "application/json";
      headers["Content-Length"] = String(data.length);
    }
    if (this.token) headers["Authorization"] = `Bearer ${this.token}`;
    const lib = this.url.protocol === "https:" ? https : http;
    const base = this.url.pathname.replace(/\/$/, "");
    return new Promise((resolve, reject) => {
      const req = lib.request(
        { protocol: this.url.protocol, hostname: this.url.hostname, port: this.url.port, path: base + path, method, headers, agent: this.agent },
        (res) => {
          let text = "";
          res.setEncoding("utf8");
          res.on("data", (c: string) => (text += c));
          res.on("end", () => {
            let reply: unknown = null;
            try {
              reply = text ? JSON.parse(text) : null;
            } catch {
              reply = null;
            }
            const status = res.statusCode ?? 0;
            if (status >= 200 && status < 300) resolve(reply);
            else reject(httpError(status, reply, `${method} ${path}`));
          });
        },
      );
      req.setTimeout(this.timeoutMs, () => {
        req.destroy(new FarameshTimeoutError(`${this.target}${path} did not answer within ${this.timeoutMs} ms`));
      });
      req.on("error", (e: NodeJS.ErrnoException) => {
        if (e instanceof FarameshError) return reject(e);
        const tls = /certificate|self.signed|CERT/i.test(`${e.code ?? ""} ${e.message}`);
        reject(
          new DaemonUnreachableError(
            tls
              ? `TLS with ${this.target} failed (${e.message}); for a self-signed certificate set FARAMESH_CA_CERT to the daemon's cert.pem`
              : `cannot reach the faramesh daemon at ${this.target} (${e.code ?? e.message}); is \`faramesh serve --listen\` running?`,
          ),
        );
      });
      if (data) req.write(data);
      req.end();
    });
  }

  async govern(call: Json): Promise<Decision> {
    return (await this.request("POST", "/v1/evaluate", call)) as Decision;
  }

  async decide(call: Json): Promise<Decision> {
    return (await this.request("POST", "/v1/gate/decide", call)) as Decision;
  }

  async waitApproval(decision: Decision, timeoutMs: number): Promise<string> {
    return (await this.waitForApproval(decision, timeoutMs)).status;
  }

  async waitForApproval(decision: Decision, timeoutMs: number): Promise<Waited> {
    const id = decision.action_id;
    if (!id) throw new InvalidRequestError("the decision has no action_id to wait on", "action_id");
    const deadline = Date.now() + timeoutMs;
    let pause = 100;
    for (;;) {
      const action = await this.getAction(id);
      const status = action["status"];
      if (status === "approved" || status === "executing" || status === "succeeded" || status === "failed") {
        return { status: "approved", edit: editOf(action["edit"]) };
      }
      if (status === "denied") return { status: "denied", edit: editOf(action["edit"]) };
      if (Date.now() >= deadline) return { status: "pending", edit: null };
      await new Promise((r) => setTimeout(r, Math.min(pause, Math.max(0, deadline - Date.now()))));
      pause = Math.min(pause * 2, 1000);
    }
  }

  async getAction(id: string): Promise<Json> {
    return (await this.request("GET", `/v1/actions/${encodeURIComponent(id)}`)) as Json;
  }

  async listActions(filters: Json = {}): Promise<Json[]> {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(filters)) if (v !== undefined && v !== null) q.set(k, String(v));
    const reply = (await this.request("GET", `/v1/actions${q.size ? `?${q}` : ""}`)) as Json;
    return (reply["actions"] ?? []) as Json[];
  }

  async submitAction(call: Json): Promise<Json> {
    return (await this.request("POST", "/v1/actions", call)) as Json;
  }

  async checkResult(actionId: string, result: unknown): Promise<Json> {
    return (await this.request("POST", `/v1/actions/${encodeURIComponent(actionId)}/result-check`, { result })) as Json;
  }

  async decideApproval(id: string, approve: boolean, reason?: string): Promise<Json> {
    const body: Json = { approve };
    if (reason !== undefined) body["reason"] = reason;
    return (await this.request("POST", `/v1/actions/${encodeURIComponent(id)}/approval`, body)) as Json;
  }

  async startAction(id: string): Promise<Json> {
    return (await this.request("POST", `/v1/actions/${encodeURIComponent(id)}/start`, {})) as Json;
  }

  async getEvents(id: string): Promise<Json[]> {
    return (await this.request("GET", `/v1/actions/${encodeURIComponent(id)}/events`)) as Json[];
  }

  async reportResult(id: string, success: boolean, result?: unknown, error?: string): Promise<Json> {
    const body: Json = { success };
    if (result !== undefined) body["result"] = result;
    if (error !== undefined) body["error"] = error;
    return (await this.request("POST", `/v1/actions/${encodeURIComponent(id)}/result`, body)) as Json;
  }

  close(): void {
    this.agent.destroy();
  }
}

function httpError(status: number, reply: unknown, what: string): Error {
  const err = (reply && typeof reply === "object" ? (reply as Json)["error"] : undefined) as Json | undefined;
  const message = err?.["message"] ? String(err["message"]) : `HTTP ${status}`;
  if (status === 401) return new UnauthorizedError(`${what}: ${message} (set FARAMESH_TOKEN)`);
  if (status === 403) return new UnauthorizedError(`${what}: ${message}`);
  if (status === 404) return new NotFoundError(`${what}: ${message}`);
  if (status === 409) return new ConflictError(`${what}: ${message}`);
  if (status === 400 || status === 413 || status === 422) return new InvalidRequestError(`${what}: ${message}`, err?.["field"] as string | undefined);
  if (status === 408) return new FarameshTimeoutError(`${what}: ${message}`);
  return new FarameshError(`${what}: HTTP ${status}: ${message}`);
}

/** FARAMESH_TOKEN, else FARAMESH_API_KEY. */
export function envToken(): string | undefined {
  return process.env["FARAMESH_TOKEN"] || process.env["FARAMESH_API_KEY"] || undefined;
}

/** The transport the environment names, in the documented order. */
export function autoTransport(timeoutMs = 10_000): Transport {
  const env = process.env;
  if (env["FARAMESH_REMOTE_URL"]) return new HttpTransport(env["FARAMESH_REMOTE_URL"], { timeoutMs });
  if (env["FARAMESH_SOCKET"]) return new SocketTransport(env["FARAMESH_SOCKET"], timeoutMs);
  const base = env["FARAMESH_BASE_URL"] || env["FARAMESH_URL"];
  if (base) return new HttpTransport(base, { timeoutMs });
  return new SocketTransport(DEFAULT_SOCKET, timeoutMs);
}

const shared = new Map<string, Transport>();

/** One shared transport per process for the current environment. */
export function defaultTransport(): Transport {
  const key = ["FARAMESH_REMOTE_URL", "FARAMESH_SOCKET", "FARAMESH_BASE_URL", "FARAMESH_URL", "FARAMESH_TOKEN", "FARAMESH_API_KEY", "FARAMESH_CA_CERT"]
    .map((k) => process.env[k] ?? "")
    .join("\u0000");
  let t = shared.get(key);
  if (!t) {
    t = autoTransport();
    log("info", `faramesh: using the ${t.kind} transport to ${t.target}`);
    shared.set(key, t);
  }
  return t;
}

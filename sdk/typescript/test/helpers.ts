// The real `faramesh` binary on a temporary socket and state dir ($FARAMESH_BIN, else the
// checkout's target/debug/faramesh). Nothing of ours is mocked.
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { mkdtempSync, openSync, writeFileSync } from "node:fs";
import { createConnection, createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../../../..");
export const BIN = process.env["FARAMESH_BIN"] || join(ROOT, "target", "debug", "faramesh");
export const AGENT_TOKEN = "ts-agent-token";
export const APPROVER_TOKEN = "ts-approver-token";

export const POLICY = `
version: 1
approvals:
  allow_same_uid: true   # the tests approve from another process of the same user
rules:
  - id: read-ok
    match: { tool: read_file, op: "*" }
    allow: true
  - id: no-delete
    match: { tool: delete_file, op: "*" }
    deny: true
    description: Deleting files is not allowed
  - id: shell-approval
    match: { tool: shell, op: "*" }
    require_approval: true
    description: Shell commands need a human
  - id: weather-ok
    match: { tool: weather, op: "*" }
    allow: true
`;

async function freePort(): Promise<number> {
  return new Promise((res) => {
    const s = createServer();
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => res(port));
    });
  });
}

function answers(path: string): Promise<boolean> {
  return new Promise((res) => {
    const c = createConnection(path);
    c.once("connect", () => {
      c.destroy();
      res(true);
    });
    c.once("error", () => res(false));
  });
}

export class Daemon {
  readonly dir = mkdtempSync(join(tmpdir(), "fm-ts-"));
  readonly socket = join(this.dir, "f.sock");
  readonly policy = join(this.dir, "policy.yaml");
  url: string | null = null;
  cert: string | null = null;
  private proc: ChildProcess | null = null;

  constructor(
    private readonly http = false,
    policy = POLICY,
  ) {
    writeFileSync(this.policy, policy);
  }

  async start(): Promise<this> {
    const args = ["serve", "--policy", this.policy, "--socket", this.socket, "--state-dir", join(this.dir, "state")];
    if (this.http) {
      const port = this.url ? Number(new URL(this.url).port) : await freePort();
      this.url = `https://127.0.0.1:${port}`;
      this.cert = join(this.dir, "state", "tls", "cert.pem");
      args.push("--listen", `127.0.0.1:${port}`, "--tls", "self-signed");
    }
    const log = openSync(join(this.dir, "daemon.log"), "a");
    this.proc = spawn(BIN, args, { stdio: ["ignore", "ignore", log], env: { ...process.env, FARAMESH_TOKEN: AGENT_TOKEN, FARAMESH_APPROVER_TOKEN: APPROVER_TOKEN } });
    for (let i = 0; i < 400; i++) {
      if (await answers(this.socket)) return this;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error("daemon did not start");
  }

  async stop(): Promise<void> {
    const p = this.proc;
    if (!p || p.exitCode !== null) return;
    await new Promise<void>((res) => {
      p.once("exit", () => res());
      p.kill("SIGTERM");
    });
  }

  cli(...args: string[]): string {
    return execFileSync(BIN, [...args, "--socket", this.socket], { encoding: "utf8" });
  }

  /** Another process (the CLI) approves or denies the first call of `tool` to become pending
   * (`flags`: more of `faramesh approve`'s, e.g. `--set cmd=uptime`). */
  decideWhenPending(tool: string, approve: boolean, ...flags: string[]): Promise<void> {
    const pending = () => {
      const out = JSON.parse(this.cli("pending", "--json")) as unknown;
      return (Array.isArray(out) ? out : (out as { approvals: unknown[] }).approvals) as { approval_id: string; tool: string }[];
    };
    const before = new Set(pending().map((a) => a.approval_id));
    return (async () => {
      for (let i = 0; i < 400; i++) {
        const found = pending().find((a) => a.tool === tool && !before.has(a.approval_id));
        if (found) {
          this.cli(approve ? "approve" : "deny", found.approval_id, ...flags);
          return;
        }
        await new Promise((r) => setTimeout(r, 50));
      }
      throw new Error(`no pending ${tool} call`);
    })();
  }
}

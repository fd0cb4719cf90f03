// The OpenCode plugin `faramesh hook install opencode` writes, loaded as OpenCode loads a
// plugin (an ES module whose export is called with the plugin context) and driven with the
// inputs OpenCode's `tool.execute.before` / `tool.execute.after` hooks receive, against the real
// daemon. Run by scripts/test.sh: FARAMESH_BIN=target/debug/faramesh node --test tests/hooks/opencode/
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, writeFileSync, readFileSync, existsSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { pathToFileURL } from "node:url";

const BIN = process.env.FARAMESH_BIN;
assert.ok(BIN, "FARAMESH_BIN names the faramesh binary under test");

const POLICY = `version: 1
rules:
  - id: shell-destructive
    match: { tool: shell, command: [{ program: rm, flags: ["-r|-R|--recursive", "-f|--force"] }] }
    deny: true
    description: Destructive shell commands are never run
  - id: shell-approval
    match: { tool: shell }
    require_approval: true
    description: Shell commands need a person
  - id: reads
    match: { tool: file, op: read, path_starts_with: /home/me/demo/ }
    allow: true
`;

const dir = mkdtempSync(join(tmpdir(), "faramesh-opencode-"));
const socket = join(dir, "faramesh.sock");
let daemon;
let plugin;

function rpc(method, params) {
  return new Promise((resolve, reject) => {
    const s = connect(socket);
    let buf = "";
    s.on("data", (d) => {
      buf += d;
      if (buf.includes("\n")) {
        s.end();
        const reply = JSON.parse(buf);
        reply.error ? reject(new Error(JSON.stringify(reply.error))) : resolve(reply.result);
      }
    });
    s.on("error", reject);
    s.write(JSON.stringify({ jsonrpc: "2.0", id: 1, method, params }) + "\n");
  });
}

before(async () => {
  writeFileSync(join(dir, "policy.yaml"), POLICY);
  process.env.XDG_RUNTIME_DIR = join(dir, "xdg");
  daemon = spawn(BIN, ["serve", "--policy", join(dir, "policy.yaml"), "--socket", socket, "--state-dir", join(dir, "state"), "--listen", "off"], {
    stdio: ["ignore", "ignore", "inherit"],
    env: { ...process.env, FARAMESH_LOG: "warn" },
  });
  for (let i = 0; i < 400 && !existsSync(socket); i++) await new Promise((r) => setTimeout(r, 25));
  assert.ok(existsSync(socket), "the daemon did not start");
  const file = join(dir, "opencode", "plugins", "faramesh.js");
  const install = spawnSync(BIN, ["hook", "install", "opencode", "--settings", file], {
    env: { ...process.env, FARAMESH_SOCKET: socket },
    encoding: "utf8",
  });
  assert.equal(install.status, 0, install.stderr);
  assert.match(readFileSync(file, "utf8"), /"--socket"/, "the installed plugin names the socket");
  const mod = await import(pathToFileURL(file).href);
  plugin = await mod.Faramesh({ directory: "/home/me/demo", worktree: "/home/me/demo" });
});

after(() => daemon?.kill());

const beforeTool = (tool, args, callID) =>
  plugin["tool.execute.before"]({ tool, sessionID: "ses_demo", callID }, { args });

test("a destructive command is stopped with the rule's reason", async () => {
  await assert.rejects(beforeTool("bash", { command: "rm -rf /tmp/build", description: "clean" }, "call_rm"), /shell-destructive/);
});

test("a deferred command is stopped with how to approve it", async () => {
  await assert.rejects(beforeTool("bash", { command: "ls -la", description: "list" }, "call_ls"), /faramesh approve/);
});

test("an allowed read runs and its outcome is recorded", async () => {
  const args = { filePath: "/home/me/demo/README.md" };
  await beforeTool("read", args, "call_read");
  await plugin["tool.execute.after"](
    { tool: "read", sessionID: "ses_demo", callID: "call_read", args },
    { title: "README.md", output: "# Demo\n", metadata: {} },
  );
  const { actions } = await rpc("action.list", { tool: "file", limit: 5 });
  assert.equal(actions.length, 1);
  assert.equal(actions[0].status, "succeeded");
  assert.equal(actions[0].params.path, "/home/me/demo/README.md");
  assert.equal(actions[0].context.host, "opencode");
  assert.equal(actions[0].context.session_id, "ses_demo");
});

test("a read outside the project is denied by default", async () => {
  await assert.rejects(beforeTool("read", { filePath: "/home/me/.ssh/id_ed25519" }, "call_key"), /DEFAULT_DENY_NO_MATCH/);
});

test("no daemon, no tool: the call is stopped", async () => {
  process.env.FARAMESH_HOOK_COMMAND = JSON.stringify([BIN, "hook", "opencode", "--socket", join(dir, "missing.sock")]);
  try {
    await assert.rejects(beforeTool("read", { filePath: "/home/me/demo/README.md" }, "call_gone"), /not reachable/);
  } finally {
    delete process.env.FARAMESH_HOOK_COMMAND;
  }
  process.env.FARAMESH_HOOK_COMMAND = JSON.stringify([join(dir, "no-such-binary")]);
  try {
    await assert.rejects(beforeTool("read", { filePath: "/home/me/demo/README.md" }, "call_nobin"), /cannot run/);
  } finally {
    delete process.env.FARAMESH_HOOK_COMMAND;
  }
});

// Faramesh for OpenCode: every tool call OpenCode makes is decided by the Faramesh daemon
// before it runs, and its outcome recorded after. Written by `faramesh hook install opencode`;
// `faramesh hook install opencode --uninstall` removes it. Documentation: docs/hooks.md.
//
// Each call runs `faramesh hook opencode` (the same decision, log and approvals as every other
// door) with the call as JSON on stdin; anything but an "allow" answer stops the tool with the
// reason, and so does a hook that cannot run or answer: nothing runs without a decision.
import { spawn } from "node:child_process";

// The command `faramesh hook install` found (FARAMESH_HOOK_COMMAND, a JSON array, overrides it).
const COMMAND = /* faramesh:command */ ["faramesh", "hook", "opencode"];

function command() {
  const given = process.env.FARAMESH_HOOK_COMMAND;
  if (!given) return COMMAND;
  const argv = JSON.parse(given);
  if (!Array.isArray(argv) || argv.length === 0 || !argv.every((a) => typeof a === "string")) {
    throw new Error("FARAMESH_HOOK_COMMAND must be a JSON array of strings");
  }
  return argv;
}

/** Runs the hook with `payload`; resolves to its answer, rejects with the reason to refuse. */
function ask(payload) {
  return new Promise((resolve, reject) => {
    let argv;
    try {
      argv = command();
    } catch (e) {
      reject(new Error(`Faramesh refused the call: ${e.message}`));
      return;
    }
    const child = spawn(argv[0], argv.slice(1), { stdio: ["pipe", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stdout.setEncoding("utf8").on("data", (d) => (out += d));
    child.stderr.setEncoding("utf8").on("data", (d) => (err += d));
    child.on("error", (e) => reject(new Error(`Faramesh refused the call: cannot run ${argv[0]} (${e.message})`)));
    child.on("close", (code) => {
      let answer = null;
      try {
        answer = JSON.parse(out);
      } catch {
        answer = null;
      }
      if (code !== 0 || answer === null || typeof answer !== "object") {
        const why = (answer && answer.reason) || err.trim() || `the hook exited with ${code}`;
        reject(new Error(why.startsWith("Faramesh") ? why : `Faramesh refused the call: ${why}`));
        return;
      }
      resolve(answer);
    });
    child.stdin.on("error", () => {});
    child.stdin.end(JSON.stringify(payload));
  });
}

export const Faramesh = async ({ directory } = {}) => ({
  "tool.execute.before": async (input, output) => {
    const answer = await ask({
      hook_event_name: "tool.execute.before",
      tool: input.tool,
      sessionID: input.sessionID,
      callID: input.callID,
      args: output.args ?? {},
      directory,
    });
    if (answer.decision !== "allow") throw new Error(answer.reason || "Faramesh denied this call");
  },
  "tool.execute.after": async (input, output) => {
    // The outcome is a record: failing to write it never fails the tool that already ran.
    await ask({
      hook_event_name: "tool.execute.after",
      tool: input.tool,
      sessionID: input.sessionID,
      callID: input.callID,
      args: input.args ?? {},
      directory,
      output: typeof output?.output === "string" ? output.output : null,
      error: output?.metadata?.error ?? null,
    }).catch(() => {});
  },
});

export default Faramesh;

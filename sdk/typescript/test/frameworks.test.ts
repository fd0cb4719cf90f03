// Real framework packages from npm in tool loops with scripted models (no network), governed by
// the real daemon: the Vercel AI SDK (`ai`'s MockLanguageModelV3), LangChain.js (a scripted
// BaseChatModel), OpenAI Agents JS (a scripted Model in the real Runner).
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";

import { AIMessage, type BaseMessage, HumanMessage, ToolMessage } from "@langchain/core/messages";
import type { ChatResult } from "@langchain/core/outputs";
import { tool as lcTool } from "@langchain/core/tools";
import { FakeChatModel } from "@langchain/core/utils/testing";
import { Agent, Runner, Usage, tool as oaTool, setTracingDisabled } from "@openai/agents";
import { type ModelMessage, generateText, stepCountIs, tool as aiTool } from "ai";
import { MockLanguageModelV3 } from "ai/test";
import { z } from "zod";

import { SocketTransport, ToolDeniedError, governedTools, reportDenial, settle, settleApprovals } from "../src/index.js";
import { Daemon } from "./helpers.js";

setTracingDisabled(true);

const daemon = new Daemon();
let transport: SocketTransport;
before(async () => {
  await daemon.start();
  transport = new SocketTransport(daemon.socket);
});
after(async () => {
  transport.close();
  await daemon.stop();
});

const usage = {
  inputTokens: { total: 1, noCache: 1, cacheRead: 0, cacheWrite: 0 },
  outputTokens: { total: 1, text: 1, reasoning: 0 },
};

function toolCallTurn(name: string, input: Record<string, unknown>) {
  return {
    content: [{ type: "tool-call" as const, toolCallId: `call-${name}`, toolName: name, input: JSON.stringify(input) }],
    finishReason: { unified: "tool-calls" as const, raw: "tool_calls" },
    usage,
    warnings: [],
  };
}

const doneTurn = {
  content: [{ type: "text" as const, text: "done" }],
  finishReason: { unified: "stop" as const, raw: "stop" },
  usage,
  warnings: [],
};

describe("Vercel AI SDK", () => {
  function aiTools(ran: string[], options: Record<string, unknown> = {}) {
    return governedTools(
      {
        weather: aiTool({
          description: "The weather in a city.",
          inputSchema: z.object({ city: z.string() }),
          execute: async ({ city }) => {
            ran.push(`weather ${city}`);
            return `sunny in ${city}`;
          },
        }),
        delete_file: aiTool({
          description: "Delete a file.",
          inputSchema: z.object({ path: z.string() }),
          execute: async ({ path }) => {
            ran.push(`delete ${path}`);
            return "deleted";
          },
        }),
      },
      { agentId: "ai-agent", transport, ...options },
    );
  }

  it("keeps each tool's description and schema", () => {
    const tools = aiTools([]);
    assert.deepEqual(Object.keys(tools), ["weather", "delete_file"]);
    assert.equal(tools.weather.description, "The weather in a city.");
    assert.ok(tools.weather.inputSchema);
  });

  it("runs a permitted tool in generateText's loop", async () => {
    const ran: string[] = [];
    const result = await generateText({
      model: new MockLanguageModelV3({ doGenerate: [toolCallTurn("weather", { city: "Oslo" }), doneTurn] }),
      tools: aiTools(ran),
      stopWhen: stepCountIs(3),
      prompt: "weather?",
    });
    assert.equal(result.text, "done");
    assert.deepEqual(ran, ["weather Oslo"]);
    assert.equal(result.steps[0]?.toolResults[0]?.output, "sunny in Oslo");
  });

  it("never executes a denied tool; the model gets the structured denial", async () => {
    const ran: string[] = [];
    const result = await generateText({
      model: new MockLanguageModelV3({ doGenerate: [toolCallTurn("delete_file", { path: "/" }), doneTurn] }),
      tools: aiTools(ran, { onDeny: reportDenial }),
      stopWhen: stepCountIs(3),
      prompt: "clean up",
    });
    assert.deepEqual(ran, []);
    const out = JSON.parse(String(result.steps[0]?.toolResults[0]?.output));
    assert.equal(out.code, "POLICY_DENY");
    assert.equal(out.rule_id, "no-delete");
    assert.equal(result.text, "done");
  });

  it("a thrown denial becomes the SDK's tool error", async () => {
    const ran: string[] = [];
    const result = await generateText({
      model: new MockLanguageModelV3({ doGenerate: [toolCallTurn("delete_file", { path: "/" }), doneTurn] }),
      tools: aiTools(ran),
      stopWhen: stepCountIs(3),
      prompt: "clean up",
    });
    assert.deepEqual(ran, []);
    const err = result.steps[0]?.content.find((c) => c.type === "tool-error");
    assert.ok(err && err.type === "tool-error" && err.error instanceof ToolDeniedError && err.error.code === "POLICY_DENY");
  });
});

describe("Vercel AI SDK tool approval (onDefer: \"interrupt\")", () => {
  function shellTools(ran: string[], agentId: string) {
    return governedTools(
      {
        shell: aiTool({
          description: "Run a shell command.",
          inputSchema: z.object({ cmd: z.string() }),
          execute: async ({ cmd }) => {
            ran.push(cmd);
            return `ran ${cmd}`;
          },
        }),
      },
      { agentId, transport, onDefer: "interrupt" },
    );
  }

  it("a DEFER is the SDK's own approval request, answered from Faramesh's approval; the call then runs once", async () => {
    const ran: string[] = [];
    const tools = shellTools(ran, "ai-interrupt");
    const model = new MockLanguageModelV3({ doGenerate: [toolCallTurn("shell", { cmd: "uptime" }), doneTurn] });
    const messages: ModelMessage[] = [{ role: "user", content: "check the load" }];
    const approving = daemon.decideWhenPending("shell", true); // a person, in another process
    const first = await generateText({ model, tools, messages, stopWhen: stepCountIs(3) });
    const request = first.content.find((c) => c.type === "tool-approval-request");
    assert.ok(request, "stopped at the SDK's tool approval request");
    assert.deepEqual(ran, [], "nothing ran while waiting");
    const answer = await settleApprovals(first, 20_000);
    await approving;
    assert.deepEqual(
      answer.content.map((c) => [c.approvalId, c.approved]),
      [[request.approvalId, true]],
    );
    messages.push(...first.response.messages, answer);
    const second = await generateText({ model, tools, messages, stopWhen: stepCountIs(3) });
    assert.equal(second.text, "done");
    assert.deepEqual(ran, ["uptime"], "ran once, after approval");
    const actions = await transport.listActions({ agent_id: "ai-interrupt" });
    assert.ok(actions.some((a) => a["reason_code"] === "APPROVAL_GRANTED"), JSON.stringify(actions));
  });

  it("a denial in Faramesh is the SDK's denied approval: the tool never runs and the model is told", async () => {
    const ran: string[] = [];
    const tools = shellTools(ran, "ai-interrupt-deny");
    const model = new MockLanguageModelV3({ doGenerate: [toolCallTurn("shell", { cmd: "reboot" }), doneTurn] });
    const messages: ModelMessage[] = [{ role: "user", content: "reboot" }];
    const denying = daemon.decideWhenPending("shell", false);
    const first = await generateText({ model, tools, messages, stopWhen: stepCountIs(3) });
    const answer = await settleApprovals(first, 20_000);
    await denying;
    assert.equal(answer.content[0]?.approved, false);
    messages.push(...first.response.messages, answer);
    const second = await generateText({ model, tools, messages, stopWhen: stepCountIs(3) });
    assert.equal(second.text, "done");
    assert.deepEqual(ran, []);
    const prompt = JSON.stringify(model.doGenerateCalls.at(-1)?.prompt);
    assert.match(prompt, /was denied; the tool did not run/, "the model saw why");
    const actions = await transport.listActions({ agent_id: "ai-interrupt-deny" });
    assert.deepEqual(
      actions.map((a) => a["status"]),
      ["denied"],
      "one decision, denied by the person: the resumed loop asked nothing again",
    );
  });

  it("a permitted call needs no approval and runs in the same loop", async () => {
    const ran: string[] = [];
    const tools = governedTools(
      {
        weather: aiTool({
          description: "The weather in a city.",
          inputSchema: z.object({ city: z.string() }),
          execute: async ({ city }) => {
            ran.push(city);
            return `sunny in ${city}`;
          },
        }),
      },
      { agentId: "ai-interrupt-permit", transport, onDefer: "interrupt" },
    );
    const result = await generateText({
      model: new MockLanguageModelV3({ doGenerate: [toolCallTurn("weather", { city: "Oslo" }), doneTurn] }),
      tools,
      prompt: "weather?",
      stopWhen: stepCountIs(3),
    });
    assert.equal(result.text, "done");
    assert.deepEqual(ran, ["Oslo"]);
    const actions = await transport.listActions({ agent_id: "ai-interrupt-permit" });
    assert.equal(actions.length, 1, "one decision for one call");
  });
});

/** A LangChain.js chat model that answers from a script. */
class ScriptedChatModel extends FakeChatModel {
  constructor(private readonly script: AIMessage[]) {
    super({});
  }
  override async _generate(): Promise<ChatResult> {
    const message = this.script.shift() ?? new AIMessage("done");
    return { generations: [{ text: String(message.content), message }] };
  }
}

describe("LangChain.js", () => {
  function lcTools(ran: string[], options: Record<string, unknown> = {}) {
    const readFile = lcTool(
      async ({ path }: { path: string }) => {
        ran.push(`read ${path}`);
        return `contents of ${path}`;
      },
      { name: "read_file", description: "Read a file.", schema: z.object({ path: z.string() }) },
    );
    const deleteFile = lcTool(
      async ({ path }: { path: string }) => {
        ran.push(`delete ${path}`);
        return "deleted";
      },
      { name: "delete_file", description: "Delete a file.", schema: z.object({ path: z.string() }) },
    );
    return { originals: [readFile, deleteFile], governed: governedTools([readFile, deleteFile], { agentId: "lc-agent", transport, ...options }) };
  }

  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  async function loop(script: AIMessage[], tools: readonly { name: string; invoke: (input: any) => Promise<unknown> }[]): Promise<BaseMessage[]> {
    const model = new ScriptedChatModel(script);
    const messages: BaseMessage[] = [new HumanMessage("go")];
    for (let turn = 0; turn < 4; turn++) {
      const ai = (await model.invoke(messages)) as AIMessage;
      messages.push(ai);
      if (!ai.tool_calls?.length) break;
      for (const call of ai.tool_calls) {
        const t = tools.find((x) => x.name === call.name);
        assert.ok(t, call.name);
        messages.push((await t.invoke({ ...call, type: "tool_call" })) as ToolMessage);
      }
    }
    return messages;
  }

  const calls = (name: string, args: Record<string, unknown>) => [
    new AIMessage({ content: "", tool_calls: [{ name, args, id: `call-${name}`, type: "tool_call" }] }),
    new AIMessage("done"),
  ];

  it("keeps name, description and schema", () => {
    const { originals, governed } = lcTools([]);
    governed.forEach((g, i) => {
      assert.equal(g.name, originals[i]!.name);
      assert.equal(g.description, originals[i]!.description);
      assert.equal(g.schema, originals[i]!.schema);
    });
  });

  it("runs a permitted tool in a tool loop", async () => {
    const ran: string[] = [];
    const messages = await loop(calls("read_file", { path: "/etc/hosts" }), lcTools(ran).governed);
    const reply = messages.find((m) => m instanceof ToolMessage) as ToolMessage;
    assert.equal(reply.content, "contents of /etc/hosts");
    assert.deepEqual(ran, ["read /etc/hosts"]);
  });

  it("never executes a denied tool in a tool loop", async () => {
    const ran: string[] = [];
    const messages = await loop(calls("delete_file", { path: "/" }), lcTools(ran, { onDeny: reportDenial }).governed);
    const reply = messages.find((m) => m instanceof ToolMessage) as ToolMessage;
    assert.equal(JSON.parse(String(reply.content)).code, "POLICY_DENY");
    assert.equal(String(messages.at(-1)?.content), "done");
    assert.deepEqual(ran, []);
    await assert.rejects(lcTools(ran).governed[1].invoke({ path: "/" }), ToolDeniedError);
    assert.deepEqual(ran, []);
  });
});

describe("OpenAI Agents JS", () => {
  function oaTools(ran: string[], options: Record<string, unknown> = {}) {
    const refund = oaTool({
      name: "read_file",
      description: "Read a file.",
      parameters: z.object({ path: z.string() }),
      execute: async ({ path }) => {
        ran.push(`read ${path}`);
        return `contents of ${path}`;
      },
    });
    const del = oaTool({
      name: "delete_file",
      description: "Delete a file.",
      parameters: z.object({ path: z.string() }),
      execute: async ({ path }) => {
        ran.push(`delete ${path}`);
        return "deleted";
      },
    });
    return { originals: [refund, del], governed: governedTools([refund, del], { agentId: "oa-agent", transport, ...options }) };
  }

  /** A model that answers from a script: each turn is a list of output items. */
  function scripted(turns: unknown[][]) {
    return {
      async getResponse() {
        return { usage: new Usage(), output: turns.shift() ?? [], responseId: "r" } as never;
      },
      // eslint-disable-next-line require-yield
      async *getStreamedResponse(): AsyncIterable<never> {
        throw new Error("not used");
      },
    };
  }

  const turns = (name: string, args: Record<string, unknown>) => [
    [{ type: "function_call", callId: `call-${name}`, name, arguments: JSON.stringify(args), status: "completed" }],
    [{ type: "message", role: "assistant", status: "completed", content: [{ type: "output_text", text: "done" }] }],
  ];

  it("keeps name, description and parameters", () => {
    const { originals, governed } = oaTools([]);
    governed.forEach((g, i) => {
      assert.equal(g.name, originals[i]!.name);
      assert.equal(g.description, originals[i]!.description);
      assert.deepEqual(g.parameters, originals[i]!.parameters);
    });
  });

  it("runs a permitted tool in the Runner and never a denied one", async () => {
    const ran: string[] = [];
    const { governed } = oaTools(ran, { onDeny: reportDenial });
    const runner = new Runner();
    const ok = await runner.run(new Agent({ name: "a", tools: [...governed], model: scripted(turns("read_file", { path: "/a" })) }), "read");
    assert.equal(ok.finalOutput, "done");
    assert.deepEqual(ran, ["read /a"]);
    const denied = await runner.run(new Agent({ name: "a", tools: [...governed], model: scripted(turns("delete_file", { path: "/" })) }), "delete");
    assert.equal(denied.finalOutput, "done");
    assert.deepEqual(ran, ["read /a"]);
    const outputs = JSON.stringify(denied.newItems.map((i) => i.toJSON()));
    assert.match(outputs, /POLICY_DENY/);
  });
  function shellTool(ran: string[]) {
    return oaTool({
      name: "shell",
      description: "Run a shell command.",
      parameters: z.object({ cmd: z.string() }),
      execute: async ({ cmd }) => {
        ran.push(cmd);
        return `ran ${cmd}`;
      },
    });
  }

  it('onDefer: "interrupt" pauses the run until a person approves in Faramesh, then runs it once', async () => {
    const ran: string[] = [];
    const shell = shellTool(ran);
    const [governed] = governedTools([shell], { agentId: "oa-interrupt", transport, onDefer: "interrupt" });
    const agent = new Agent({ name: "ops", tools: [governed!], model: scripted(turns("shell", { cmd: "uptime" })) });
    const runner = new Runner();
    const approving = daemon.decideWhenPending("shell", true); // a person, in another process
    const first = await runner.run(agent, "check the load");
    assert.equal(first.interruptions?.length, 1, "paused at the tool call");
    assert.deepEqual(ran, [], "nothing ran while paused");
    const state = await settle(first, 20_000);
    await approving;
    const resumed = await runner.run(agent, state);
    assert.equal(resumed.finalOutput, "done");
    assert.deepEqual(ran, ["uptime"], "ran once, after approval");
    const actions = await transport.listActions({ agent_id: "oa-interrupt" });
    assert.ok(actions.some((a) => a["reason_code"] === "APPROVAL_GRANTED"), JSON.stringify(actions));
  });

  it('onDefer: "interrupt" and a denial: the run goes on without the tool', async () => {
    const ran: string[] = [];
    const shell = shellTool(ran);
    const [governed] = governedTools([shell], { agentId: "oa-interrupt-deny", transport, onDefer: "interrupt" });
    const agent = new Agent({ name: "ops", tools: [governed!], model: scripted(turns("shell", { cmd: "reboot" })) });
    const runner = new Runner();
    const denying = daemon.decideWhenPending("shell", false);
    const first = await runner.run(agent, "reboot");
    const state = await settle(first, 20_000);
    await denying;
    const resumed = await runner.run(agent, state);
    assert.equal(resumed.finalOutput, "done");
    assert.deepEqual(ran, []);
    assert.match(JSON.stringify(resumed.newItems.map((i) => i.toJSON())), /was denied; the tool did not run/);
  });
});

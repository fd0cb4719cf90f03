import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { describe, it } from "node:test";

import * as esm from "../src/index.js";

// `require("@faramesh/sdk")` (the package refers to itself by name) loads the CommonJS build.
const require = createRequire(import.meta.url);

describe("CommonJS", () => {
  it("require() gives the same API as import", () => {
    const cjs = require("@faramesh/sdk") as typeof esm;
    for (const name of ["governedTools", "governTool", "gateDecide", "submitAction", "approveAction", "SocketTransport", "HttpTransport", "ToolDeniedError", "ExecutionGovernorClient", "getEvents"]) {
      assert.equal(typeof (cjs as Record<string, unknown>)[name], "function", name);
    }
    assert.ok(require.resolve("@faramesh/sdk").includes(`dist${"/"}cjs${"/"}`), require.resolve("@faramesh/sdk"));
    const params = { url: "https://example.com" };
    assert.equal(cjs.requestHash("a", "http", "get", params, {}), esm.requestHash("a", "http", "get", params, {}));
  });

  it("a tool governed through the CommonJS build is denied by the stub transport", async () => {
    const { StubTransport } = require("@faramesh/sdk/testing") as typeof import("../src/testing.js");
    const cjs = require("@faramesh/sdk") as typeof esm;
    const transport = new StubTransport({ read_file: "permit" });
    const ran: string[] = [];
    const [read, del] = cjs.governedTools(
      [
        async function read_file({ path }: { path: string }) {
          ran.push(`read ${path}`);
          return "ok";
        },
        async function delete_file({ path }: { path: string }) {
          ran.push(`delete ${path}`);
          return "gone";
        },
      ],
      { agentId: "cjs-agent", transport },
    );
    assert.equal(await read!({ path: "/x" }), "ok");
    await assert.rejects(del!({ path: "/x" }), cjs.ToolDeniedError);
    assert.deepEqual(ran, ["read /x"]);
  });
});

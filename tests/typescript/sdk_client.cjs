// Drives portcullis with the official MCP TypeScript SDK (npm `@modelcontextprotocol/sdk`), over
// stdio and streamable HTTP, against the conformance component and its policy.
//
// Usage: node sdk_client.cjs BINARY CONFIG URL TOKEN   (NODE_PATH = the node_modules holding the SDK)
// Prints one JSON object with what each transport saw; the Rust test asserts on it.
"use strict";

const { Client } = require("@modelcontextprotocol/sdk/client/index.js");
const { StdioClientTransport } = require("@modelcontextprotocol/sdk/client/stdio.js");
const { StreamableHTTPClientTransport } = require("@modelcontextprotocol/sdk/client/streamableHttp.js");

async function exercise(transport) {
  const client = new Client({ name: "portcullis-ts-test", version: "1.0.0" });
  await client.connect(transport);
  const tools = await client.listTools();
  const called = await client.callTool({ name: "test_simple_text", arguments: {} });
  const resources = await client.listResources();
  const read = await client.readResource({ uri: "test://template/7/data" });
  const prompt = await client.getPrompt({
    name: "test_prompt_with_arguments",
    arguments: { arg1: "alpha", arg2: "beta" },
  });
  let missing;
  try {
    await client.readResource({ uri: "test://no-such-resource" });
    missing = "no error";
  } catch (error) {
    missing = { code: error.code, message: error.message };
  }
  const completion = await client.complete({
    ref: { type: "ref/prompt", name: "test_prompt_with_arguments" },
    argument: { name: "arg1", value: "test" },
  });
  await client.close();
  return {
    server: client.getServerVersion().name,
    tools: tools.tools.map((t) => t.name).sort(),
    called: called.content[0].text,
    resources: resources.resources.map((r) => r.uri).sort(),
    read: JSON.parse(read.contents[0].text),
    prompt: prompt.messages[0].content.text,
    missing,
    completion: completion.completion.values,
  };
}

async function main([binary, config, url, token]) {
  const out = {};
  out.stdio = await exercise(
    new StdioClientTransport({
      command: binary,
      args: ["--config", config, "serve", "--stdio"],
      env: { ...process.env, RUST_LOG: "portcullis=error" },
      stderr: "inherit",
    }),
  );
  out.http = await exercise(
    new StreamableHTTPClientTransport(new URL(url), {
      requestInit: { headers: { Authorization: `Bearer ${token}` } },
    }),
  );
  process.stdout.write(JSON.stringify(out) + "\n");
}

main(process.argv.slice(2)).catch((error) => {
  console.error(error);
  process.exit(1);
});

// Write portcullis tools in JavaScript.
//
// A thin layer over the `portcullis:tool` WIT contract for componentize-js: declare each tool
// with `define({...}, handler)`, return text, a JSON value or an `Output`, throw `InvalidInput`
// or `Failed`, and re-export `tool` (the WIT export) from your entry file:
//
//     import { define } from "./portcullis-tool.js";
//     export { tool } from "./portcullis-tool.js";
//     define({ name: "greet", description: "Greets.", inputSchema: {...} }, (args) => `hi ${args.name}`);
//
// Build with
//
//     componentize-js tool.js --wit wit/tool.wit -n tool-component -d http -d fetch-event -o tool.wasm
//
// The gateway checks every input against the tool's `inputSchema` before the handler runs, and
// runs each call in a fresh instance: module state never survives from one call to the next.

import * as host from "portcullis:tool/host@0.2.0";

/** The input is wrong in a way the schema could not say: the agent should change it. */
export class InvalidInput extends Error {}

/** The tool could not do its work (the agent sees the message). */
export class Failed extends Error {}

/** What a call returns: text for the model, optional structured output, and whether it is a
 * failure the tool reports as its result (`Output.failure`). */
export class Output {
  constructor(text, structured = undefined, isError = false) {
    this.text = text;
    this.structured = structured;
    this.isError = isError;
  }

  /** Structured output `value`; the same JSON is the text, for clients without
   * structured-output support. */
  static of(value) {
    return new Output(JSON.stringify(value), value);
  }

  /** A failure the model should see and may act on (`isError: true`). */
  static failure(message) {
    return new Output(message, undefined, true);
  }
}

const tools = new Map();

/**
 * Declares a tool. `spec`: `name`, `description`, `inputSchema` (a JSON Schema object), and
 * optionally `title`, `outputSchema`, `readOnly`, `destructive`, `idempotent`, `openWorld`.
 * `handler(args)` (may be async) returns a string (text), an `Output`, or any other JSON value
 * (structured output, also sent as JSON text). With `outputSchema`, successful results must be
 * structured and match it: the gateway checks.
 */
export function define(spec, handler) {
  if (tools.has(spec.name)) {
    throw new Error(`tool ${spec.name} is declared twice`);
  }
  tools.set(spec.name, {
    info: {
      name: spec.name,
      title: spec.title,
      description: spec.description,
      inputSchema: JSON.stringify(spec.inputSchema),
      outputSchema: spec.outputSchema === undefined ? undefined : JSON.stringify(spec.outputSchema),
      annotations: {
        readOnly: !!spec.readOnly,
        destructive: !!spec.destructive,
        idempotent: !!spec.idempotent,
        openWorld: !!spec.openWorld,
      },
    },
    handler,
  });
}

/** A log line (`trace`, `debug`, `info`, `warn` or `error`), recorded with the call and sent to
 * the client at or above the level it asked for. */
export function log(level, message) {
  host.log(level, message);
}

/** Progress of the call, sent to the client if its request asked for it. */
export function progress(done, total, message) {
  host.progress(BigInt(done), total === undefined ? undefined : BigInt(total), message);
}

/** The value of secret `name`, if policy granted it to this call; throws `Failed` otherwise. */
export function secret(name) {
  try {
    return host.secret(name);
  } catch (e) {
    throw new Failed(e.payload ?? String(e));
  }
}

// A WIT `result` error is thrown with its value as `payload`.
function refuse(tag, message) {
  const error = new Error(message);
  error.payload = { tag, val: message };
  return error;
}

function result(value) {
  if (typeof value === "string") {
    value = new Output(value);
  } else if (!(value instanceof Output)) {
    value = Output.of(value);
  }
  return {
    content: [{ kind: { tag: "text", val: value.text }, annotations: undefined }],
    structured: value.structured === undefined ? undefined : JSON.stringify(value.structured),
    isError: value.isError,
  };
}

/** The WIT `tool` export: `export { tool } from "./portcullis-tool.js";` in your entry file. */
export const tool = {
  describe() {
    return [...tools.values()].map((t) => t.info);
  },
  async call(name, input) {
    const entry = tools.get(name);
    if (entry === undefined) {
      throw refuse("unknown-tool", name);
    }
    let args;
    try {
      args = JSON.parse(input);
    } catch (e) {
      throw refuse("invalid-input", `the input is not JSON: ${e.message}`);
    }
    try {
      return result(await entry.handler(args));
    } catch (e) {
      if (e instanceof InvalidInput) throw refuse("invalid-input", e.message);
      if (e instanceof Failed) throw refuse("failed", e.message);
      throw refuse("failed", `${e?.name ?? "Error"}: ${e?.message ?? String(e)}`);
    }
  },
};

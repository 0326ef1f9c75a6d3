// `hash_js`: the Rust `data` component's `hash` tool, in JavaScript, to compare the two.

import { InvalidInput, define, log } from "../portcullis-tool.js";

export { tool } from "../portcullis-tool.js";

const ALGORITHMS = { sha256: "SHA-256", sha512: "SHA-512" };

define(
  {
    name: "hash_js",
    title: "Hash text (JavaScript)",
    description: "Computes the SHA-256 or SHA-512 digest of a text.",
    inputSchema: {
      type: "object",
      properties: {
        text: { type: "string", description: "The text to hash (its UTF-8 bytes)." },
        algorithm: { enum: ["sha256", "sha512"], default: "sha256" },
      },
      required: ["text"],
      additionalProperties: false,
    },
    outputSchema: {
      type: "object",
      properties: {
        algorithm: { type: "string" },
        hex: { type: "string", description: "Lower-case hex digest." },
      },
      required: ["algorithm", "hex"],
    },
    readOnly: true,
  },
  async (args) => {
    const algorithm = args.algorithm ?? "sha256";
    if (args.text === "") {
      throw new InvalidInput("there is nothing to hash: `text` is empty");
    }
    log("debug", `hashing ${args.text.length} characters with ${algorithm}`);
    const bytes = new TextEncoder().encode(args.text);
    const digest = new Uint8Array(await crypto.subtle.digest(ALGORITHMS[algorithm], bytes));
    const hex = Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
    return { algorithm, hex };
  },
);

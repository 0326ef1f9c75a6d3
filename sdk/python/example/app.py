"""`hash_py`: the Rust `data` component's `hash` tool, in Python, to compare the two."""

import hashlib

from portcullis_tool import InvalidInput, Tool, log, tool  # noqa: F401 (Tool: the export)


@tool(
    name="hash_py",
    title="Hash text (Python)",
    description="Computes the SHA-256 or SHA-512 digest of a text.",
    input_schema={
        "type": "object",
        "properties": {
            "text": {"type": "string", "description": "The text to hash (its UTF-8 bytes)."},
            "algorithm": {"enum": ["sha256", "sha512"], "default": "sha256"},
        },
        "required": ["text"],
        "additionalProperties": False,
    },
    output_schema={
        "type": "object",
        "properties": {
            "algorithm": {"type": "string"},
            "hex": {"type": "string", "description": "Lower-case hex digest."},
        },
        "required": ["algorithm", "hex"],
    },
    read_only=True,
)
def hash_py(args):
    algorithm = args.get("algorithm", "sha256")
    if args["text"] == "":
        raise InvalidInput("there is nothing to hash: `text` is empty")
    log("debug", f"hashing {len(args['text'])} characters with {algorithm}")
    digest = hashlib.new(algorithm, args["text"].encode()).hexdigest()
    return {"algorithm": algorithm, "hex": digest}

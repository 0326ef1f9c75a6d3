"""Drives portcullis with the official MCP Python SDK (PyPI `mcp`), over stdio and HTTP.

Usage: sdk_client.py BINARY CONFIG URL TOKEN [tools|items]
Prints one JSON object with what each transport saw; the Rust test asserts on it. `tools`
(the default) lists and calls the example tools; `items` reads resources, gets prompts and
asks for completions of the conformance component.
"""

import asyncio
import json
import sys

import httpx2
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client


def text(result):
    return "\n".join(c.text for c in result.content if getattr(c, "type", None) == "text")


async def exercise(session):
    info = await session.initialize()
    tools = await session.list_tools()
    ok = await session.call_tool("hash", {"text": "abc"})
    denied = await session.call_tool("read_file", {"path": ".git/config"})
    invalid = await session.call_tool("hash", {"text": 5})
    try:
        await session.call_tool("no_such_tool", {})
        unknown = "no error"
    except Exception as error:  # the SDK raises on JSON-RPC errors
        unknown = str(error)
    return {
        "server": info.server_info.name,
        "tools": sorted(t.name for t in tools.tools),
        "ok": {"is_error": ok.is_error, "structured": ok.structured_content},
        "denied": {"is_error": denied.is_error, "text": text(denied)},
        "invalid": {"is_error": invalid.is_error, "text": text(invalid)},
        "unknown": unknown,
    }


async def exercise_items(session):
    await session.initialize()
    resources = await session.list_resources()
    templates = await session.list_resource_templates()
    text_resource = await session.read_resource("test://static-text")
    templated = await session.read_resource("test://template/42/data")
    binary = await session.read_resource("test://static-binary")
    prompts = await session.list_prompts()
    prompt = await session.get_prompt(
        "test_prompt_with_arguments", {"arg1": "first", "arg2": "second"}
    )
    image = await session.get_prompt("test_prompt_with_image")
    try:
        await session.get_prompt("test_prompt_with_arguments", {"arg1": "only"})
        missing = "no error"
    except Exception as error:
        missing = str(error)
    from mcp.types import PromptReference

    completion = await session.complete(
        PromptReference(type="ref/prompt", name="test_prompt_with_arguments"),
        {"name": "arg1", "value": "tes"},
    )
    return {
        "resources": sorted(str(r.uri) for r in resources.resources),
        "templates": [t.uri_template for t in templates.resource_templates],
        "text": text_resource.contents[0].text,
        "templated": json.loads(templated.contents[0].text),
        "blob_mime": binary.contents[0].mime_type,
        "prompts": sorted(p.name for p in prompts.prompts),
        "prompt": prompt.messages[0].content.text,
        "image": [m.content.type for m in image.messages],
        "missing": missing,
        "completion": completion.completion.values,
    }


async def main(binary, config, url, token, mode="tools"):
    run = exercise_items if mode == "items" else exercise
    out = {}
    params = StdioServerParameters(command=binary, args=["--config", config, "serve", "--stdio"])
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as session:
            out["stdio"] = await run(session)
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx2.AsyncClient(headers=headers) as http:
        async with streamable_http_client(url, http_client=http) as (read, write):
            async with ClientSession(read, write) as session:
                out["http"] = await run(session)
    print(json.dumps(out))


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:6]))

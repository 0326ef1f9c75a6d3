"""Drives portcullis with the official MCP Python SDK (PyPI `mcp`), over stdio and HTTP.

Usage: sdk_client.py BINARY CONFIG URL TOKEN
Prints one JSON object with what each transport saw; the Rust test asserts on it.
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


async def main(binary, config, url, token):
    out = {}
    params = StdioServerParameters(command=binary, args=["--config", config, "serve", "--stdio"])
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as session:
            out["stdio"] = await exercise(session)
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx2.AsyncClient(headers=headers) as http:
        async with streamable_http_client(url, http_client=http) as (read, write):
            async with ClientSession(read, write) as session:
                out["http"] = await exercise(session)
    print(json.dumps(out))


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))

"""Write portcullis tools in Python.

A thin, typed layer over the bindings `componentize-py` generates from `wit/tool.wit`: declare
each tool with `@tool`, return text, a JSON value or an `Output`, raise `InvalidInput` or
`Failed`, and build with

    componentize-py -d wit -w tool-component componentize -p sdk/python -p . app -o tool.wasm

where `app.py` defines your tools and ends with `from portcullis_tool import Tool`. The gateway
checks every input against the tool's `input_schema` before your function runs, and runs each
call in a fresh instance: module-level state never survives from one call to the next.
"""

import json
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import host, types

__all__ = [
    "Failed",
    "InvalidInput",
    "Output",
    "Tool",
    "log",
    "progress",
    "secret",
    "tool",
]


class InvalidInput(Exception):
    """The input is wrong in a way the schema could not say: the agent should change it."""


class Failed(Exception):
    """The tool could not do its work (the agent sees the message)."""


@dataclass
class Output:
    """What a call returns: text for the model, optional structured output (a JSON value),
    and whether it is a failure the tool reports as its result (`Output.failure`)."""

    text: str
    structured: Any = None
    is_error: bool = False

    @staticmethod
    def of(value: Any) -> "Output":
        """Structured output `value`; the same JSON is the text, for clients without
        structured-output support."""
        return Output(json.dumps(value, separators=(",", ":")), structured=value)

    @staticmethod
    def failure(message: str) -> "Output":
        """A failure the model should see and may act on (`isError: true`)."""
        return Output(message, is_error=True)


Handler = Callable[[Dict[str, Any]], Any]
_TOOLS: Dict[str, Tuple[types.ToolInfo, Handler]] = {}


def tool(
    *,
    description: str,
    input_schema: Dict[str, Any],
    name: Optional[str] = None,
    title: Optional[str] = None,
    output_schema: Optional[Dict[str, Any]] = None,
    read_only: bool = False,
    destructive: bool = False,
    idempotent: bool = False,
    open_world: bool = False,
) -> Callable[[Handler], Handler]:
    """Declares the decorated function `f(args: dict)` as a tool named `name` (default: the
    function's name). It returns a `str` (text), an `Output`, or any other JSON value
    (structured output, also sent as JSON text). With `output_schema`, successful results must
    be structured and match it: the gateway checks."""

    def register(handler: Handler) -> Handler:
        tool_name = name or handler.__name__
        if tool_name in _TOOLS:
            raise ValueError(f"tool {tool_name!r} is declared twice")
        info = types.ToolInfo(
            name=tool_name,
            title=title,
            description=description,
            input_schema=json.dumps(input_schema),
            output_schema=None if output_schema is None else json.dumps(output_schema),
            annotations=types.Annotations(
                read_only=read_only,
                destructive=destructive,
                idempotent=idempotent,
                open_world=open_world,
            ),
        )
        _TOOLS[tool_name] = (info, handler)
        return handler

    return register


_LEVELS = {
    "trace": host.Level.TRACE,
    "debug": host.Level.DEBUG,
    "info": host.Level.INFO,
    "warn": host.Level.WARN,
    "error": host.Level.ERROR,
}


def log(level: str, message: str) -> None:
    """A log line (`trace`, `debug`, `info`, `warn` or `error`), recorded with the call and
    sent to the client at or above the level it asked for."""
    host.log(_LEVELS[level], message)


def progress(done: int, total: Optional[int] = None, message: Optional[str] = None) -> None:
    """Progress of the call, sent to the client if its request asked for it."""
    host.progress(done, total, message)


def secret(name: str) -> str:
    """The value of secret `name`, if policy granted it to this call; `Failed` otherwise."""
    try:
        return host.secret(name)
    except Err as e:
        raise Failed(e.value) from None


def _result(value: Any) -> types.CallResult:
    if isinstance(value, str):
        value = Output(value)
    elif not isinstance(value, Output):
        value = Output.of(value)
    text = types.Content(kind=types.ContentKind_Text(value.text), annotations=None)
    structured = None
    if value.structured is not None:
        structured = json.dumps(value.structured, separators=(",", ":"))
    return types.CallResult(content=[text], structured=structured, is_error=value.is_error)


class Tool(exports.Tool):
    """The `tool` export: what `componentize-py` looks for in your app module."""

    def describe(self) -> List[types.ToolInfo]:
        return [info for info, _ in _TOOLS.values()]

    def call(self, name: str, input: str) -> types.CallResult:
        entry = _TOOLS.get(name)
        if entry is None:
            raise Err(types.ToolError_UnknownTool(name))
        try:
            args = json.loads(input)
        except ValueError as e:
            raise Err(types.ToolError_InvalidInput(f"the input is not JSON: {e}")) from None
        try:
            return _result(entry[1](args))
        except InvalidInput as e:
            raise Err(types.ToolError_InvalidInput(str(e))) from None
        except Failed as e:
            raise Err(types.ToolError_Failed(str(e))) from None
        except Exception as e:  # a bug in the tool: say what it was
            raise Err(types.ToolError_Failed(f"{type(e).__name__}: {e}")) from None

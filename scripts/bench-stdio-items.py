#!/usr/bin/env python3
# Usage: scripts/bench-stdio-items.py BINARY CONFIG ROUNDS, with a configuration that loads
# .portcullis/conformance and tools/conformance/policy (see scripts/conformance for one).
# Sequential stdio round trips against `portcullis serve --stdio`: ping, a tool call, a
# resource read, a prompt get; median and p90 per kind, interleaved so drift hits all alike.
import json, subprocess, sys, time, statistics
binary, config, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
p = subprocess.Popen([binary, "--config", config, "serve", "--stdio"], stdin=subprocess.PIPE,
                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, bufsize=0)
rid = 0
def rpc(method, params=None):
    global rid
    rid += 1
    msg = {"jsonrpc": "2.0", "id": rid, "method": method}
    if params is not None: msg["params"] = params
    p.stdin.write((json.dumps(msg) + "\n").encode())
    while True:
        line = p.stdout.readline()
        reply = json.loads(line)
        if reply.get("id") == rid: return reply
rpc("initialize", {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "rt", "version": "1"}})
p.stdin.write(b'{"jsonrpc":"2.0","method":"notifications/initialized"}\n')
kinds = {
    "ping": ("ping", None),
    "tools/call test_simple_text": ("tools/call", {"name": "test_simple_text", "arguments": {}}),
    "resources/read test://static-text": ("resources/read", {"uri": "test://static-text"}),
    "resources/read template": ("resources/read", {"uri": "test://template/1/data"}),
    "prompts/get with arguments": ("prompts/get", {"name": "test_prompt_with_arguments", "arguments": {"arg1": "a", "arg2": "b"}}),
}
times = {k: [] for k in kinds}
for i in range(n + 50):
    for k, (m, params) in kinds.items():
        t = time.perf_counter(); r = rpc(m, params); dt = time.perf_counter() - t
        assert "error" not in r, r
        if i >= 50: times[k].append(dt * 1e6)
base = statistics.median(times["ping"])
for k, v in times.items():
    v.sort(); med = statistics.median(v)
    print(f"{k:38s} median {med:7.0f} µs  p90 {v[int(len(v)*0.9)]:7.0f} µs  {med/base:4.2f}× ping")
p.stdin.close(); p.wait()

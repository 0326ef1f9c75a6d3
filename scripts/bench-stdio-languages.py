#!/usr/bin/env python3
# Usage: scripts/bench-stdio-languages.py BINARY CONFIG ROUNDS, with a configuration whose tools
# directory holds data.wasm, hash-py.wasm and hash-js.wasm (scripts/build-tools, build-languages)
# and whose policy lets its stdio principal call them (the default policy does, for writers).
# Sequential stdio round trips against `portcullis serve --stdio`: ping and the same tool in
# Rust, Python and JavaScript, interleaved; median, p90 and ratios.
import json, subprocess, sys, statistics, time
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
        reply = json.loads(p.stdout.readline())
        if reply.get("id") == rid: return reply
rpc("initialize", {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "rt", "version": "1"}})
p.stdin.write(b'{"jsonrpc":"2.0","method":"notifications/initialized"}\n')
kinds = {"ping": ("ping", None)}
for t in ["hash", "hash_py", "hash_js"]:
    kinds[t] = ("tools/call", {"name": t, "arguments": {"text": "a"}})
times = {k: [] for k in kinds}
for i in range(n + 50):
    for k, (m, params) in kinds.items():
        t0 = time.perf_counter(); r = rpc(m, params); dt = time.perf_counter() - t0
        assert "error" not in r and not r.get("result", {}).get("isError"), r
        if i >= 50: times[k].append(dt)
base = statistics.median(times["hash"])
ping = statistics.median(times["ping"])
for k, v in times.items():
    med = statistics.median(v)
    print(f"{k:10} median {med*1e6:8.0f} µs  p90 {sorted(v)[int(len(v)*0.9)]*1e6:8.0f} µs  {med/ping:5.2f}× ping  {med/base:5.2f}× hash")
p.stdin.close(); p.wait()

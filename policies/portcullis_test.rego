# Unit tests for portcullis.rego. Run them with `portcullis policy test` (the test command does).
package portcullis_test

import rego.v1

# Rules are referred to as data.portcullis.…, not through `import data.portcullis`: regorus
# 0.14 evaluates an imported package module by module, and with more than one module in the
# package (portcullis.rego, ops.rego) a rule may then see a rule of a later module as undefined.

tool(name, component, annotations) := {"name": name, "component": component, "digest": "sha256:00", "annotations": annotations}

read_only := {"read_only": true, "destructive": false, "idempotent": true, "open_world": false}

destructive := {"read_only": false, "destructive": true, "idempotent": false, "open_world": false}

principal(id, roles) := {"id": id, "roles": roles, "claims": {}, "authenticated_by": "token"}

call(p, t, args, env) := {
	"version": 1, "action": "call", "principal": p, "tool": t, "args": args,
	"plan_hash": "sha256:00", "environment": env, "context": {},
}

list(p, t) := {"version": 1, "action": "list", "principal": p, "tool": t, "environment": "dev", "context": {}}

gateway := {"workspace": "/srv/ws"}

reader := principal("alice", ["reader"])

writer := principal("bob", ["writer"])

admin := principal("root", ["admin"])

nobody := principal("eve", [])

read_file := tool("read_file", "workspace", read_only)

write_file := tool("write_file", "workspace", destructive)

hash := tool("hash", "data", read_only)

test_reader_sees_read_tools if {
	data.portcullis.decision.allow with input as list(reader, read_file) with data.gateway as gateway
}

test_reader_does_not_see_write_file if {
	not data.portcullis.decision.allow with input as list(reader, write_file) with data.gateway as gateway
}

test_unknown_principal_sees_nothing if {
	not data.portcullis.decision.allow with input as list(nobody, hash) with data.gateway as gateway
}

test_reader_reads_with_a_read_only_grant if {
	d := data.portcullis.decision with input as call(reader, read_file, {"path": "src/main.rs"}, "dev") with data.gateway as gateway
	d.allow
	d.grants.fs == [{"host": "/srv/ws", "guest": "/workspace", "mode": "ro", "hide": [".git", ".env", "secrets"]}]
	d.limits.timeout_ms == 5000
}

test_writer_writes_with_a_read_write_grant if {
	d := data.portcullis.decision with input as call(writer, write_file, {"path": "notes.md", "content": "x"}, "dev") with data.gateway as gateway
	d.allow
	d.grants.fs[0].mode == "rw"
	d.grants.fs[0].hide == [".git", ".env", "secrets"]
	d.redact == ["args.content"]
}

test_reader_may_not_write if {
	d := data.portcullis.decision with input as call(reader, write_file, {"path": "notes.md", "content": "x"}, "dev") with data.gateway as gateway
	not d.allow
	d.reasons == ["principal \"alice\" may not use tool \"write_file\""]
}

test_destructive_needs_admin_in_prod if {
	d := data.portcullis.decision with input as call(writer, write_file, {"path": "n.md", "content": "x"}, "prod") with data.gateway as gateway
	not d.allow
	d.reasons == ["tool \"write_file\" changes data; in prod only the admin role may call it"]
}

test_admin_may_write_in_prod if {
	d := data.portcullis.decision with input as call(admin, write_file, {"path": "n.md", "content": "x"}, "prod") with data.gateway as gateway
	d.allow
}

test_prod_write_file_only_creates if {
	d := data.portcullis.decision with input as call(admin, write_file, {"path": "n.md", "content": "x", "mode": "overwrite"}, "prod") with data.gateway as gateway
	not d.allow
	d.reasons == ["write_file mode \"overwrite\" is not allowed in prod; use create_new"]
}

test_protected_prefixes_are_denied if {
	d := data.portcullis.decision with input as call(reader, read_file, {"path": "./.git/config"}, "dev") with data.gateway as gateway
	not d.allow
	d.reasons == ["path \"./.git/config\" is under the protected prefix \".git/\""]
}

test_anonymous_may_not_write if {
	anon := {"id": "guest", "roles": ["writer"], "claims": {}, "authenticated_by": "anonymous"}
	d := data.portcullis.decision with input as call(anon, write_file, {"path": "n.md", "content": "x"}, "dev") with data.gateway as gateway
	not d.allow
}

test_data_tools_get_no_capabilities if {
	d := data.portcullis.decision with input as call(reader, hash, {"text": "abc"}, "dev") with data.gateway as gateway
	d.allow
	d.grants == {}
	d.limits.memory_mb == 32
}

test_prod_tightens_timeouts if {
	d := data.portcullis.decision with input as call(reader, hash, {"text": "abc"}, "prod") with data.gateway as gateway
	d.limits.timeout_ms == 3000
}

test_oversized_writes_are_denied if {
	d := data.portcullis.decision with input as call(writer, write_file, {"path": "n.md", "content": "12345"}, "dev")
		with data.gateway as gateway
		with data.access.workspace.max_write_bytes as 4
	not d.allow
	d.reasons == ["write_file content is 5 bytes; the limit is 4"]
}

# --- rate limits and budgets ----------------------------------------------------------------

test_every_call_carries_the_principals_fuel_budget if {
	d := data.portcullis.decision with input as call(reader, read_file, {"path": "a"}, "dev") with data.gateway as gateway
	d.rate == [{"key": "fuel:alice", "max": 100000000000, "window_s": 3600, "cost": "fuel"}]
}

test_destructive_tools_are_rate_limited_per_principal if {
	d := data.portcullis.decision with input as call(writer, write_file, {"path": "a.txt", "content": "x"}, "dev") with data.gateway as gateway
	{"key": "destructive:bob", "max": 60, "window_s": 3600} in d.rate
	count(d.rate) == 2
}

test_the_numbers_come_from_data_governance if {
	d := data.portcullis.decision with input as call(writer, write_file, {"path": "a.txt", "content": "x"}, "dev")
		with data.gateway as gateway
		with data.governance as {"destructive": {"max": 3, "window_s": 60}, "fuel_budget": {"max": 10, "window_s": 60}}
	{"key": "destructive:bob", "max": 3, "window_s": 60} in d.rate
	{"key": "fuel:bob", "max": 10, "window_s": 60, "cost": "fuel"} in d.rate
}

test_without_governance_data_calls_are_denied if {
	d := data.portcullis.decision with input as call(reader, read_file, {"path": "a"}, "dev")
		with data.gateway as gateway
		with data.governance as {}
	not d.allow
}

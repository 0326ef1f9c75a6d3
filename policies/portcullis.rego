# The default portcullis policy. Read it as a set of examples of the patterns an operator needs;
# copy it into your own policy directory and change it. The input and decision formats are in
# policies/README.md.
#
# Patterns shown here:
#   1. tool allow-lists per principal and per role (data.access.roles / .principals)
#   2. environment-dependent rules (stricter in "prod")
#   3. field-level constraints on arguments (workspace path prefixes, a value set, a size cap)
#   4. annotation-aware rules (destructive tools need more than read-only ones)
#   5. grants and limits per tool
#   6. rate limits and budgets: destructive tools per principal, fuel per principal per hour
# The operations tools (ops, fetch) are in ops.rego, in this same package.
package portcullis

import rego.v1

# Deny unless a rule below decides otherwise.
default decision := {"allow": false, "reasons": ["no policy rule allows this request"]}

# --- tools/list: show a tool only to principals who may use it -------------------------------

decision := {"allow": true} if {
	input.action == "list"
	tool_permitted
}

# --- tools/call ------------------------------------------------------------------------------

decision := {"allow": false, "reasons": sort([r | some r in deny])} if {
	input.action == "call"
	count(deny) > 0
}

decision := object.union({
	"allow": true,
	"grants": grants,
	"limits": limits,
	"redact": redact,
	"rate": rate,
}, approval) if {
	input.action == "call"
	count(deny) == 0
}

# An allowed call may still need approval (ops.rego: changes in prod).
approval := {"requires_approval": requires_approval} if requires_approval else := {}

# 1. Allow-lists: a principal may use a tool listed for one of its roles or for itself.
permitted_tools contains tool if {
	some role in input.principal.roles
	some tool in data.access.roles[role].tools
}

permitted_tools contains tool if {
	some tool in data.access.principals[input.principal.id].tools
}

tool_permitted if "*" in permitted_tools

tool_permitted if input.tool.name in permitted_tools

deny contains msg if {
	not tool_permitted
	msg := sprintf("principal %q may not use tool %q", [input.principal.id, input.tool.name])
}

# 2 + 4. Destructive tools: never for anonymous callers, and only for admins in prod.
deny contains msg if {
	input.tool.annotations.destructive
	input.principal.authenticated_by == "anonymous"
	msg := sprintf("tool %q changes data; anonymous callers may only use read-only tools", [input.tool.name])
}

deny contains msg if {
	input.tool.annotations.destructive
	input.environment == "prod"
	not ops_change # restart, scale and deploy have their own prod rule: approval (ops.rego)
	not "admin" in input.principal.roles
	msg := sprintf("tool %q changes data; in prod only the admin role may call it", [input.tool.name])
}

# 3. Field constraints on the workspace tools.
workspace_tool if input.tool.component == "workspace"

deny contains msg if {
	workspace_tool
	path := object.get(input.args, "path", ".")
	some prefix in data.access.workspace.protected_prefixes
	startswith(trim_prefix(path, "./"), prefix)
	msg := sprintf("path %q is under the protected prefix %q", [path, prefix])
}

deny contains msg if {
	input.tool.name == "write_file"
	count(input.args.content) > data.access.workspace.max_write_bytes
	msg := sprintf("write_file content is %d bytes; the limit is %d", [count(input.args.content), data.access.workspace.max_write_bytes])
}

# In prod, write_file may only create new files (no overwrite, no append).
deny contains msg if {
	input.tool.name == "write_file"
	input.environment == "prod"
	mode := object.get(input.args, "mode", "create_new")
	not mode in {"create_new"}
	msg := sprintf("write_file mode %q is not allowed in prod; use create_new", [mode])
}

# --- 5. Grants and limits per tool -----------------------------------------------------------

# Each tool family contributes its grants; other tools get no capabilities at all.
grants := workspace_grants if {
	workspace_tool
} else := ops_grants if {
	ops_tool
} else := fetch_grants if {
	fetch_tool
} else := {}

# The workspace tools see the gateway's workspace directory at /workspace: read-only for
# read-only tools, read-write otherwise.
# `hide` makes the protected paths absent inside the instance, whatever the spelling, symlink,
# listing or recursive search: the gateway's filesystem layer enforces it. The protected-prefix
# rule above only gives the plain spelling a friendlier message.
workspace_grants := {"fs": [{
	"host": data.gateway.workspace,
	"guest": "/workspace",
	"mode": workspace_mode,
	"hide": data.access.workspace.hidden,
}]}

workspace_mode := "ro" if input.tool.annotations.read_only else := "rw"

# Defaults, overridden per tool (each family has its own table), then tightened per environment.
limits := object.union(
	object.union(data.access.limits.default, tool_limits),
	object.get(data.access.limits.environments, input.environment, {}),
)

tool_limits := ops_limits if ops_family else := object.get(data.access.limits.tools, input.tool.name, {})

# Content written by write_file never appears in logs or the audit trail.
redact := ["args.content"] if input.tool.name == "write_file" else := []

# --- 6. Rate limits and budgets ----------------------------------------------------------------

# The gateway enforces these atomically across concurrent calls and restarts; a call over one
# is refused with the limit's key and when its window resets. data.governance sets the numbers;
# without it every call is denied (the decision is undefined).
rate := array.concat(destructive_rate, fuel_budget)

# Destructive tools: at most data.governance.destructive.max calls per principal per window.
destructive_rate := [{
	"key": sprintf("destructive:%s", [input.principal.id]),
	"max": data.governance.destructive.max,
	"window_s": data.governance.destructive.window_s,
}] if input.tool.annotations.destructive else := []

# Every principal has a fuel budget per window, whatever the tool: a call starts only while
# budget is left, and the fuel it used is charged after it ran.
fuel_budget := [{
	"key": sprintf("fuel:%s", [input.principal.id]),
	"max": data.governance.fuel_budget.max,
	"window_s": data.governance.fuel_budget.window_s,
	"cost": "fuel",
}]

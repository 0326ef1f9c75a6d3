# The operations tools of the default policy: the `ops` component (list_services, get_service,
# restart_service, scale_service, deploy) and the `fetch` component (http_fetch). Data is under
# data.ops; the operator's values under data.gateway.settings ([settings] in portcullis.toml).
# Tests: ops_test.rego. The rules are described in policies/README.md, "Operations tools".
#
# Patterns shown here:
#   6. capabilities computed from the arguments: an http grant for exactly one endpoint, with a
#      credential the gateway injects (the tool never holds it)
#   7. value sets per environment (restartable services), ranges and pinned releases from data
#   8. human approval in prod instead of an outright denial
#   9. operator settings as grants (settings.control_plane, settings.fetch)
package portcullis

import rego.v1

# --- which tools ------------------------------------------------------------------------------

ops_tool if input.tool.component == "ops"

ops_call(name) if {
	ops_tool
	input.tool.name == name
}

fetch_tool if {
	input.tool.component == "fetch"
	input.tool.name == "http_fetch"
}

# The ops and fetch tools take their limits from data.ops.limits (see `limits`).
ops_family if ops_tool

ops_family if fetch_tool

# The tools that change a service, and the service they change.
ops_change if {
	ops_tool
	input.tool.name in {"restart_service", "scale_service", "deploy"}
}

ops_arg(key) := object.get(input.args, key, "")

ops_service := ops_arg("service") if ops_call("deploy") else := ops_arg("name")

# --- operator settings ------------------------------------------------------------------------

gateway_settings := s if {
	s := object.get(data.gateway, "settings", {})
	is_object(s)
} else := {}

configured_control_plane := object.get(gateway_settings, "control_plane", {})

# The control plane: the operator's settings.control_plane, key by key over data.ops.control_plane.
control_plane := {key: object.get(configured_control_plane, key, default_value) |
	some key, default_value in data.ops.control_plane
} if is_object(configured_control_plane)

control_plane_types := {"url": "string", "host": "string", "port": "number", "scheme": "string", "token_secret": "string"}

deny contains "settings.control_plane in portcullis.toml must be a table {url, host, port, scheme}" if {
	ops_tool
	not is_object(configured_control_plane)
}

deny contains msg if {
	ops_tool
	some key, want in control_plane_types
	type_name(control_plane[key]) != want
	msg := sprintf("settings.control_plane.%s in portcullis.toml must be a %s", [key, want])
}

# --- ops: arguments ---------------------------------------------------------------------------

# Service names become a path segment of the grant: only plain names.
deny contains msg if {
	ops_change
	not plain_name(ops_service)
	msg := sprintf("service name %s is not a plain name (letters, digits, '.', '_', '-'; at most 63)", [json.marshal(ops_service)])
}

plain_name(name) if {
	is_string(name)
	regex.match(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`, name)
}

# A restart changes a running system although it destroys nothing: not for anonymous callers
# either (the generic rule covers only destructive tools).
deny contains msg if {
	ops_call("restart_service")
	input.principal.authenticated_by == "anonymous"
	msg := "restart_service changes a running service; anonymous callers may only use read-only tools"
}

# Only the services listed for this environment may be restarted.
deny contains msg if {
	ops_call("restart_service")
	name := ops_arg("name")
	is_string(name)
	not name in object.get(data.ops, ["restartable", input.environment], [])
	msg := sprintf("service %q may not be restarted in %s (data.ops.restartable)", [name, input.environment])
}

# Replicas within data.ops.scale.min..max.
deny contains msg if {
	ops_call("scale_service")
	replicas := object.get(input.args, "replicas", null)
	not replicas_in_range(replicas)
	msg := sprintf("scale_service replicas must be between %s and %s; got %s", [
		json.marshal(object.get(data.ops, ["scale", "min"], null)),
		json.marshal(object.get(data.ops, ["scale", "max"], null)),
		json.marshal(replicas),
	])
}

replicas_in_range(n) if {
	is_number(n)
	n >= data.ops.scale.min
	n <= data.ops.scale.max
}

# Only pinned releases: data.ops.artifacts[service] lists the digests that may be deployed.
deny contains msg if {
	ops_call("deploy")
	service := ops_arg("service")
	is_string(service)
	artifact := ops_arg("artifact")
	not artifact in object.get(data.ops, ["artifacts", service], [])
	msg := sprintf("artifact %s is not a pinned release for service %q (data.ops.artifacts)", [json.marshal(artifact), service])
}

# --- ops: approval in prod --------------------------------------------------------------------

# Changes in prod are allowed subject to approval; the gateway refuses them with this reason until
# the approvals are there. Deny rules still win (a decision with reasons is a denial).
# data.ops.approval names how many approvers, their roles and the approval's lifetime.
requires_approval := {
	"approvers": data.ops.approval.approvers,
	"roles": data.ops.approval.roles,
	"ttl_s": object.get(data.ops.approval, "ttl_s", 3600),
	"reason": sprintf("%s of %s in prod needs %s from %s", [
		input.tool.name, ops_service,
		approvals_text(data.ops.approval.approvers),
		concat(" or ", data.ops.approval.roles),
	]),
} if {
	ops_change
	input.environment == "prod"
}

number_words := ["no", "one", "two", "three", "four", "five"]

approvals_text(1) := "one approval"

approvals_text(n) := sprintf("%s approvals", [count_word(n)]) if n != 1

count_word(n) := number_words[n] if n < count(number_words) else := sprintf("%v", [n])

# Fail closed: a change in prod without an approval requirement (data.ops.approval missing or
# malformed) is denied.
deny contains "ops changes in prod need data.ops.approval {approvers, roles}" if {
	ops_change
	input.environment == "prod"
	not requires_approval
}

# --- ops: grants ------------------------------------------------------------------------------

# The control-plane endpoint each ops tool may reach: one method, one path prefix.
ops_endpoint := ["GET", "/v1/services"] if {
	input.tool.name in {"list_services", "get_service"}
} else := ["POST", sprintf("/v1/services/%s/restart", [ops_arg("name")])] if {
	input.tool.name == "restart_service"
} else := ["POST", sprintf("/v1/services/%s/scale", [ops_arg("name")])] if {
	input.tool.name == "scale_service"
} else := ["POST", sprintf("/v1/services/%s/deploy", [ops_arg("service")])] if {
	input.tool.name == "deploy"
}

# The base URL in CONTROL_PLANE_URL, and http to that one endpoint with the credential injected by
# the gateway. An ops tool without an endpoint here gets nothing.
ops_grants := {
	"env": {"CONTROL_PLANE_URL": control_plane.url},
	"http": [{
		"host": control_plane.host,
		"schemes": [control_plane.scheme],
		"ports": [control_plane.port],
		"methods": [method],
		"paths": [path],
		"inject": {"header": "Authorization", "secret": control_plane.token_secret, "format": "Bearer {}"},
	}],
} if {
	[method, path] := ops_endpoint
}

# --- fetch ------------------------------------------------------------------------------------

fetch_setting := object.get(gateway_settings, "fetch", [])

deny contains "http_fetch has no hosts configured (settings.fetch in portcullis.toml)" if {
	fetch_tool
	fetch_setting == []
}

deny contains "settings.fetch in portcullis.toml must be a list of http grants (tables)" if {
	fetch_tool
	not fetch_setting_valid
}

fetch_setting_valid if {
	is_array(fetch_setting)
	every grant in fetch_setting {
		is_object(grant)
	}
}

# Exactly the operator's grants, GET only whatever they say.
fetch_grants := {"http": [object.union(grant, {"methods": ["GET"]}) | some grant in fetch_setting]} if {
	fetch_setting_valid
}

# --- limits -----------------------------------------------------------------------------------

ops_limits := object.get(data.ops.limits, input.tool.name, {})

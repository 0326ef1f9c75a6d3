# Unit tests for ops.rego (the ops and fetch tools). The helpers tool, principal, call, list,
# read_only, destructive, gateway, reader, writer and admin are in portcullis_test.rego (same
# package). Refer to data.portcullis.… directly (see the note there).
package portcullis_test

import rego.v1

changes := {"read_only": false, "destructive": false, "idempotent": false, "open_world": false}

open_world := {"read_only": true, "destructive": false, "idempotent": true, "open_world": true}

list_services := tool("list_services", "ops", read_only)

get_service := tool("get_service", "ops", read_only)

restart_service := tool("restart_service", "ops", changes)

scale_service := tool("scale_service", "ops", destructive)

deploy := tool("deploy", "ops", destructive)

http_fetch := tool("http_fetch", "fetch", open_world)

deployer := principal("dora", ["deploy"])

list_dir := tool("list_dir", "workspace", read_only)

search_text := tool("search_text", "workspace", read_only)

json_query := tool("json_query", "data", read_only)

# The demo's current web release (data.ops.artifacts.web).
web_release := "sha256:078b98052539d2d0618380c68dcd77ff6519de0d7cd631be1eab404d7c86905c"

api_release := "sha256:3910894d492f833f2e5d5c63f6a2d37f676ca22fadb116953a8824d1273d2ec9"

unpinned := "sha256:0000000000000000000000000000000000000000000000000000000000000000"

with_settings(settings) := {"workspace": "/srv/ws", "settings": settings}

# What an ops tool gets on the default control plane: its URL and one endpoint, with the token
# injected by the gateway.
cp_grants(method, path) := {
	"env": {"CONTROL_PLANE_URL": "http://127.0.0.1:8091"},
	"http": [{
		"host": "127.0.0.1", "schemes": ["http"], "ports": [8091],
		"methods": [method], "paths": [path],
		"inject": {"header": "Authorization", "secret": "CONTROL_PLANE_TOKEN", "format": "Bearer {}"},
	}],
}

default_limits := {"fuel": 500000000, "memory_mb": 64, "timeout_ms": 5000, "output_kb": 1024}

# The rate rules every call of `p` carries (portcullis.rego, section 6), and those of a
# destructive tool.
budget(p) := [{"key": sprintf("fuel:%s", [p.id]), "max": 100000000000, "window_s": 3600, "cost": "fuel"}]

destructive_budget(p) := array.concat([{"key": sprintf("destructive:%s", [p.id]), "max": 60, "window_s": 3600}], budget(p))

ops_decision(p, t, args, env) := d if {
	d := data.portcullis.decision with input as call(p, t, args, env) with data.gateway as gateway
}

# --- access -----------------------------------------------------------------------------------

test_ops_readers_and_writers_see_the_read_only_ops_tools if {
	every p in [reader, writer] {
		every t in [list_services, get_service, http_fetch] {
			data.portcullis.decision.allow with input as list(p, t) with data.gateway as gateway
		}
	}
}

test_ops_readers_and_writers_do_not_see_changes if {
	every p in [reader, writer] {
		every t in [restart_service, scale_service, deploy] {
			not data.portcullis.decision.allow with input as list(p, t) with data.gateway as gateway
		}
	}
}

test_ops_the_deploy_role_sees_the_ops_and_read_tools if {
	every t in [list_services, get_service, restart_service, scale_service, deploy, http_fetch, read_file, list_dir, search_text, json_query, hash] {
		data.portcullis.decision.allow with input as list(deployer, t) with data.gateway as gateway
	}
	not data.portcullis.decision.allow with input as list(deployer, write_file) with data.gateway as gateway
}

test_ops_a_writer_may_not_restart if {
	d := ops_decision(writer, restart_service, {"name": "web"}, "dev")
	d.reasons == ["principal \"bob\" may not use tool \"restart_service\""]
}

# --- read-only calls --------------------------------------------------------------------------

test_ops_list_services_reads_the_control_plane if {
	d := ops_decision(reader, list_services, {}, "dev")
	d == {"allow": true, "grants": cp_grants("GET", "/v1/services"), "limits": default_limits, "redact": [], "rate": budget(reader)}
}

test_ops_get_service_in_prod_needs_no_approval if {
	d := ops_decision(reader, get_service, {"name": "api"}, "prod")
	d.allow
	d.grants == cp_grants("GET", "/v1/services")
	not "requires_approval" in object.keys(d)
}

# --- where the control plane is ---------------------------------------------------------------

test_ops_the_control_plane_comes_from_settings if {
	cp := {"url": "http://127.0.0.1:40123", "host": "127.0.0.1", "port": 40123, "scheme": "http"}
	d := data.portcullis.decision with input as call(reader, list_services, {}, "dev")
		with data.gateway as with_settings({"control_plane": cp})
	d.grants.env == {"CONTROL_PLANE_URL": "http://127.0.0.1:40123"}
	d.grants.http[0].ports == [40123]
	d.grants.http[0].inject.secret == "CONTROL_PLANE_TOKEN"
}

test_ops_control_plane_settings_fall_back_key_by_key if {
	d := data.portcullis.decision with input as call(reader, list_services, {}, "dev")
		with data.gateway as with_settings({"control_plane": {"host": "cp.internal", "scheme": "https"}})
	d.grants.env == {"CONTROL_PLANE_URL": "http://127.0.0.1:8091"}
	h := d.grants.http[0]
	[h.host, h.schemes, h.ports] == ["cp.internal", ["https"], [8091]]
}

test_ops_control_plane_settings_must_be_a_table if {
	d := data.portcullis.decision with input as call(reader, list_services, {}, "dev")
		with data.gateway as with_settings({"control_plane": "http://127.0.0.1:8091"})
	d.reasons == ["settings.control_plane in portcullis.toml must be a table {url, host, port, scheme}"]
}

test_ops_control_plane_settings_are_type_checked if {
	d := data.portcullis.decision with input as call(reader, list_services, {}, "dev")
		with data.gateway as with_settings({"control_plane": {"port": "8091"}})
	d.reasons == ["settings.control_plane.port in portcullis.toml must be a number"]
}

# --- restart_service --------------------------------------------------------------------------

test_ops_restart_in_staging_reaches_that_service_only if {
	d := ops_decision(deployer, restart_service, {"name": "web"}, "staging")
	d == {"allow": true, "grants": cp_grants("POST", "/v1/services/web/restart"), "limits": default_limits, "redact": [], "rate": budget(deployer)}
}

test_ops_restart_of_a_service_not_listed_for_the_environment_is_denied if {
	d := ops_decision(deployer, restart_service, {"name": "billing"}, "staging")
	d.reasons == ["service \"billing\" may not be restarted in staging (data.ops.restartable)"]
	ops_decision(deployer, restart_service, {"name": "billing"}, "dev").allow
}

test_ops_nothing_is_restartable_in_an_environment_without_data if {
	d := ops_decision(deployer, restart_service, {"name": "web"}, "qa")
	d.reasons == ["service \"web\" may not be restarted in qa (data.ops.restartable)"]
}

# --- service names ----------------------------------------------------------------------------

test_ops_service_names_are_plain if {
	d := ops_decision(deployer, scale_service, {"name": "web/../billing", "replicas": 2}, "dev")
	d.reasons == ["service name \"web/../billing\" is not a plain name (letters, digits, '.', '_', '-'; at most 63)"]
	not ops_decision(deployer, scale_service, {"name": 5, "replicas": 2}, "dev").allow
	ops_decision(deployer, scale_service, {"name": "web-2_a.b", "replicas": 2}, "dev").allow
}

# --- scale_service ----------------------------------------------------------------------------

test_ops_scale_within_range_reaches_the_scale_endpoint if {
	d := ops_decision(deployer, scale_service, {"name": "api", "replicas": 4}, "dev")
	d == {"allow": true, "grants": cp_grants("POST", "/v1/services/api/scale"), "limits": default_limits, "redact": [], "rate": destructive_budget(deployer)}
	ops_decision(deployer, scale_service, {"name": "api", "replicas": 1}, "dev").allow
	ops_decision(deployer, scale_service, {"name": "api", "replicas": 10}, "dev").allow
}

test_ops_scale_out_of_range_is_denied if {
	ops_decision(deployer, scale_service, {"name": "api", "replicas": 0}, "dev").reasons == ["scale_service replicas must be between 1 and 10; got 0"]
	ops_decision(deployer, scale_service, {"name": "api", "replicas": 11}, "dev").reasons == ["scale_service replicas must be between 1 and 10; got 11"]
	ops_decision(deployer, scale_service, {"name": "api", "replicas": "3"}, "dev").reasons == ["scale_service replicas must be between 1 and 10; got \"3\""]
	ops_decision(deployer, scale_service, {"name": "api"}, "dev").reasons == ["scale_service replicas must be between 1 and 10; got null"]
}

# --- deploy -----------------------------------------------------------------------------------

test_ops_deploy_of_a_pinned_release_reaches_the_deploy_endpoint if {
	d := ops_decision(deployer, deploy, {"service": "web", "artifact": web_release}, "staging")
	d == {"allow": true, "grants": cp_grants("POST", "/v1/services/web/deploy"), "limits": default_limits, "redact": [], "rate": destructive_budget(deployer)}
}

test_ops_deploy_of_an_unpinned_artifact_is_denied if {
	d := ops_decision(deployer, deploy, {"service": "web", "artifact": unpinned}, "staging")
	d.reasons == [sprintf("artifact \"%s\" is not a pinned release for service \"web\" (data.ops.artifacts)", [unpinned])]
}

test_ops_releases_are_pinned_per_service if {
	not ops_decision(deployer, deploy, {"service": "web", "artifact": api_release}, "dev").allow
	ops_decision(deployer, deploy, {"service": "api", "artifact": api_release}, "dev").allow
	not ops_decision(deployer, deploy, {"service": "worker", "artifact": web_release}, "dev").allow
}

# --- prod: approval ---------------------------------------------------------------------------

test_ops_restart_in_prod_requires_approval if {
	d := ops_decision(deployer, restart_service, {"name": "web"}, "prod")
	d == {
		"allow": true,
		"grants": cp_grants("POST", "/v1/services/web/restart"),
		"limits": object.union(default_limits, {"timeout_ms": 3000}),
		"redact": [],
		"rate": budget(deployer),
		"requires_approval": {"approvers": 2, "roles": ["sre"], "ttl_s": 3600, "reason": "restart_service of web in prod needs two approvals from sre"},
	}
}

# Not the generic "destructive tools in prod only for admin" rule: approval instead.
test_ops_scale_and_deploy_in_prod_require_approval if {
	s := ops_decision(deployer, scale_service, {"name": "web", "replicas": 4}, "prod")
	s.allow
	s.grants == cp_grants("POST", "/v1/services/web/scale")
	s.requires_approval.reason == "scale_service of web in prod needs two approvals from sre"
	d := ops_decision(deployer, deploy, {"service": "api", "artifact": api_release}, "prod")
	d.allow
	d.grants == cp_grants("POST", "/v1/services/api/deploy")
	d.requires_approval == {"approvers": 2, "roles": ["sre"], "ttl_s": 3600, "reason": "deploy of api in prod needs two approvals from sre"}
}

test_ops_admins_need_approval_in_prod_too if {
	d := ops_decision(admin, scale_service, {"name": "web", "replicas": 4}, "prod")
	d.requires_approval.approvers == 2
}

test_ops_deny_rules_win_over_approval if {
	d := ops_decision(deployer, deploy, {"service": "web", "artifact": unpinned}, "prod")
	not d.allow
	not "requires_approval" in object.keys(d)
}

test_ops_the_approval_reason_counts_approvers if {
	one := data.portcullis.decision with input as call(deployer, restart_service, {"name": "web"}, "prod")
		with data.gateway as gateway
		with data.ops.approval as {"approvers": 1, "roles": ["sre", "oncall"]}
	one.requires_approval == {"approvers": 1, "roles": ["sre", "oncall"], "ttl_s": 3600, "reason": "restart_service of web in prod needs one approval from sre or oncall"}
	seven := data.portcullis.decision with input as call(deployer, restart_service, {"name": "web"}, "prod")
		with data.gateway as gateway
		with data.ops.approval as {"approvers": 7, "roles": ["sre"]}
	seven.requires_approval.reason == "restart_service of web in prod needs 7 approvals from sre"
}

test_ops_prod_changes_without_approval_data_are_denied if {
	d := data.portcullis.decision with input as call(deployer, restart_service, {"name": "web"}, "prod")
		with data.gateway as gateway
		with data.ops.approval as {}
	d.reasons == ["ops changes in prod need data.ops.approval {approvers, roles}"]
}

# --- which tools are ops tools ----------------------------------------------------------------

test_ops_anonymous_callers_may_not_scale_or_deploy if {
	anon := {"id": "guest", "roles": ["deploy"], "claims": {}, "authenticated_by": "anonymous"}
	ops_decision(anon, scale_service, {"name": "web", "replicas": 2}, "dev").reasons == ["tool \"scale_service\" changes data; anonymous callers may only use read-only tools"]
	not ops_decision(anon, deploy, {"service": "web", "artifact": web_release}, "dev").allow
	ops_decision(anon, restart_service, {"name": "web"}, "dev").reasons == ["restart_service changes a running service; anonymous callers may only use read-only tools"]
	ops_decision(anon, list_services, {}, "dev").allow
}

# A tool of another component is not an ops tool, whatever its name.
test_ops_rules_are_for_the_ops_component_only if {
	other := tool("deploy", "other", destructive)
	d := ops_decision(deployer, other, {"service": "web", "artifact": web_release}, "prod")
	d.reasons == ["tool \"deploy\" changes data; in prod only the admin role may call it"]
	ops_decision(deployer, other, {"service": "web", "artifact": web_release}, "dev").grants == {}
}

# Another ops tool gets no grants, and in prod the generic destructive rule applies to it.
test_ops_an_ops_tool_without_an_endpoint_gets_nothing if {
	delete := tool("delete_service", "ops", destructive)
	d := ops_decision(admin, delete, {"name": "web"}, "dev")
	d.allow
	d.grants == {}
	p := data.portcullis.decision with input as call(deployer, delete, {"name": "web"}, "prod")
		with data.gateway as gateway
		with data.access.principals as {"dora": {"tools": ["delete_service"]}}
	p.reasons == ["tool \"delete_service\" changes data; in prod only the admin role may call it"]
}

# Ops and fetch tools take per-tool limits from data.ops.limits (none for the ops tools by default).
test_ops_limits_per_tool_come_from_data_ops_limits if {
	d := data.portcullis.decision with input as call(deployer, deploy, {"service": "web", "artifact": web_release}, "dev")
		with data.gateway as gateway
		with data.ops.limits as {"deploy": {"timeout_ms": 20000}}
	d.limits == object.union(default_limits, {"timeout_ms": 20000})
}

# Without data.ops nothing may change (the value sets and ranges fail closed).
test_ops_without_data_changes_are_denied if {
	every c in [
		[restart_service, {"name": "web"}],
		[scale_service, {"name": "web", "replicas": 2}],
		[deploy, {"service": "web", "artifact": web_release}],
	] {
		not data.portcullis.decision.allow with input as call(deployer, c[0], c[1], "dev")
			with data.gateway as gateway
			with data.ops as {}
	}
}

# --- http_fetch -------------------------------------------------------------------------------

test_fetch_without_configured_hosts_is_denied if {
	d := ops_decision(reader, http_fetch, {"url": "https://example.com/"}, "dev")
	d.reasons == ["http_fetch has no hosts configured (settings.fetch in portcullis.toml)"]
	e := data.portcullis.decision with input as call(reader, http_fetch, {"url": "https://example.com/"}, "dev")
		with data.gateway as with_settings({"fetch": []})
	e.reasons == d.reasons
}

test_fetch_grants_exactly_the_configured_hosts_for_get if {
	configured := [
		{"host": "127.0.0.1", "schemes": ["http"], "ports": [8091], "paths": ["/debug/"]},
		{"host": "*.example.com", "methods": ["GET", "POST"]},
	]
	d := data.portcullis.decision with input as call(reader, http_fetch, {"url": "https://api.example.com/"}, "dev")
		with data.gateway as with_settings({"fetch": configured})
	d == {
		"allow": true,
		"grants": {"http": [
			{"host": "127.0.0.1", "schemes": ["http"], "ports": [8091], "paths": ["/debug/"], "methods": ["GET"]},
			{"host": "*.example.com", "methods": ["GET"]},
		]},
		"limits": object.union(default_limits, {"timeout_ms": 10000}),
		"redact": [],
		"rate": budget(reader),
	}
}

test_fetch_settings_must_be_a_list_of_tables if {
	reason := "settings.fetch in portcullis.toml must be a list of http grants (tables)"
	d := data.portcullis.decision with input as call(reader, http_fetch, {"url": "https://example.com/"}, "dev")
		with data.gateway as with_settings({"fetch": {"host": "example.com"}})
	d.reasons == [reason]
	e := data.portcullis.decision with input as call(reader, http_fetch, {"url": "https://example.com/"}, "dev")
		with data.gateway as with_settings({"fetch": ["example.com"]})
	e.reasons == [reason]
}

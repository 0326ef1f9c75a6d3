# The policy for the MCP conformance run (scripts/conformance): every principal may list and
# use the conformance tools, resources and prompts, which need no capabilities; anything else
# is denied.
package portcullis

import rego.v1

conformance := {
	"test_simple_text", "test_image_content", "test_audio_content", "test_embedded_resource",
	"test_multiple_content_types", "test_tool_with_logging", "test_error_handling",
	"test_tool_with_progress", "json_schema_2020_12_tool", "test_reconnection",
}

# The tools that ask the user may do so; the one that asks the client's model may do that.
asks_user := {"test_elicitation", "test_elicitation_sep1034_defaults", "test_elicitation_sep1330_enums"}

decision := {"allow": true, "grants": {"elicit": true}} if input.tool.name in asks_user

decision := {"allow": true, "grants": {"sample": true}} if input.tool.name == "test_sampling"

conformance_prompts := {
	"test_simple_prompt", "test_prompt_with_arguments", "test_prompt_with_embedded_resource",
	"test_prompt_with_image",
}

default decision := {"allow": false, "reasons": ["not a conformance tool, resource or prompt"]}

decision := {"allow": true} if input.tool.name in conformance

decision := {"allow": true} if {
	input.action in {"list", "get", "complete"}
	input.prompt.name in conformance_prompts
}

# Resources: list and read anything the conformance component serves.
decision := {"allow": true} if {
	input.action in {"list", "read", "complete"}
	input.resource.component == "conformance"
}

test_conformance_tools_are_allowed if {
	decision.allow with input as {"action": "call", "tool": {"name": "test_simple_text"}}
}

test_other_tools_are_denied if {
	not decision.allow with input as {"action": "call", "tool": {"name": "write_file"}}
}

test_conformance_prompts_and_resources_are_allowed if {
	decision.allow with input as {"action": "get", "prompt": {"name": "test_simple_prompt"}}
	decision.allow with input as {"action": "read", "resource": {"uri": "test://static-text", "component": "conformance"}}
}

test_other_resources_are_denied if {
	not decision.allow with input as {"action": "read", "resource": {"uri": "file:///etc/passwd", "component": "workspace"}}
	not decision.allow with input as {"action": "call", "prompt": {"name": "test_simple_prompt"}}
}

# The policy for the MCP conformance run (scripts/conformance): every principal may list and
# call the conformance tools, which need no capabilities; anything else is denied.
package portcullis

import rego.v1

conformance := {
	"test_simple_text", "test_image_content", "test_audio_content", "test_embedded_resource",
	"test_multiple_content_types", "test_tool_with_logging", "test_error_handling",
	"test_tool_with_progress", "json_schema_2020_12_tool",
}

default decision := {"allow": false, "reasons": ["not a conformance tool"]}

decision := {"allow": true} if input.tool.name in conformance

test_conformance_tools_are_allowed if {
	decision.allow with input as {"action": "call", "tool": {"name": "test_simple_text"}}
}

test_other_tools_are_denied if {
	not decision.allow with input as {"action": "call", "tool": {"name": "write_file"}}
}

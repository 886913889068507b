"""The sim agent: orch's built-in, offline stand-in for a coding-agent CLI."""

"""orch: conduct a team of coding-agent CLIs from one Claude Code session."""

__version__ = "0.1.0"

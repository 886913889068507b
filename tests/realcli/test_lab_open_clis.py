"""The lab's setup for opencode, Qwen Code and Copilot: their config files (Copilot: its
provider variables) point at the stub, and the paths opencode prints relative to / are
neutralized like every other scratch path."""

from __future__ import annotations

import json
from pathlib import Path

from .netns import COPILOT_MODEL, OPENCODE_MODEL, QWEN_MODEL, Scratch


def test_configs_point_at_the_stub(tmp_path: Path) -> None:
    scratch = Scratch(tmp_path / "x")
    scratch.create(port=4242)
    config = json.loads(scratch.opencode_config.read_text())
    provider, model = OPENCODE_MODEL.split("/")
    assert config["model"] == OPENCODE_MODEL and model in config["provider"][provider]["models"]
    assert config["provider"][provider]["options"]["baseURL"] == "http://127.0.0.1:4242/v1"
    assert config["share"] == "disabled" and config["autoupdate"] is False
    settings = json.loads((scratch.home / ".qwen" / "settings.json").read_text())
    assert settings["security"]["auth"]["selectedType"] == "openai"
    assert settings["memory"]["enableManagedAutoMemory"] is False
    env = scratch.env(4242, None)
    assert env["OPENAI_BASE_URL"] == "http://127.0.0.1:4242/v1" and env["OPENAI_MODEL"] == QWEN_MODEL
    assert env["XDG_CONFIG_HOME"] == str(scratch.opencode_config.parent.parent)
    # Copilot's own-provider mode, offline: no GitHub login, telemetry or update check
    assert env["COPILOT_PROVIDER_BASE_URL"] == "http://127.0.0.1:4242/v1" and env["COPILOT_MODEL"] == COPILOT_MODEL
    assert env["COPILOT_OFFLINE"] == "true" and env["COPILOT_AUTO_UPDATE"] == "false"


def test_paths_relative_to_root_are_neutral(tmp_path: Path) -> None:
    scratch = Scratch(tmp_path / "x")
    work = scratch.workdir("opencode")
    rel = str(work / "denied.txt").lstrip("/")
    text = f"permission requested: edit ({rel}); auto-rejecting"
    assert scratch.neutral(text) == "permission requested: edit (/workspace/opencode/denied.txt); auto-rejecting"

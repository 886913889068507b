"""The plugin's files as Claude Code reads them: manifests, hooks.json, the seven commands.

Keys and conventions come from Claude Code's documentation (plugins reference, skills
frontmatter reference, hooks reference, plugin marketplaces); the launcher-path rules come
from runs of the genuine claude 2.1.197 (see specifications/SLASH_COMMANDS_SPEC.md).
The helpers here render a command file the way Claude Code does, in both modes, and are
shared with the other test_plugin_* modules.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from pathlib import Path

import click
import pytest

try:  # Python 3.11+
    import tomllib
except ModuleNotFoundError:  # Python 3.10, as orch's own policy reader does
    import tomli as tomllib

from orchestrator import __version__
from orchestrator.cli import cli

ROOT = Path(__file__).resolve().parents[1]
COMMANDS_DIR = ROOT / ".claude" / "commands"
LAUNCHER = ROOT / "scripts" / "orch"
PLUGIN_ROOT_VAR = "${CLAUDE_PLUGIN_ROOT}"
PROJECT_DIR_VAR = "${CLAUDE_PROJECT_DIR}"
PLUGIN_LAUNCHER = f'"{PLUGIN_ROOT_VAR}/scripts/orch"'
PROJECT_LAUNCHER = f'"{PROJECT_DIR_VAR}/scripts/orch"'
THIN = {"orch-monitor": "monitor", "orch-list": "list", "orch-logs": "logs", "orch-abort": "abort",
        "orch-status": "status", "orch-report": "report"}
SEVEN = {"orchestrate", *THIN}

# Claude Code's documented fields (code.claude.com/docs/en/skills "Frontmatter reference":
# a command file accepts every skill field except `name` and `paths`).
COMMAND_KEYS = {"description", "when_to_use", "argument-hint", "arguments", "disable-model-invocation",
                "user-invocable", "allowed-tools", "disallowed-tools", "model", "effort", "context", "agent",
                "background", "hooks", "shell", "metadata", "license", "compatibility"}
# code.claude.com/docs/en/plugins-reference "Plugin manifest schema".
MANIFEST_KEYS = {"$schema", "name", "displayName", "version", "description", "author", "homepage", "repository",
                 "license", "keywords", "metadata", "defaultEnabled", "skills", "commands", "agents", "workflows",
                 "hooks", "mcpServers", "outputStyles", "lspServers", "experimental", "userConfig", "channels",
                 "dependencies"}
MARKET_KEYS = {"$schema", "name", "owner", "plugins", "description", "version", "metadata",
               "allowCrossMarketplaceDependenciesOn", "renames"}
MARKET_ENTRY_KEYS = MANIFEST_KEYS | {"source", "category", "tags", "strict", "relevance", "headers", "headersHelper"}
RESERVED_MARKETS = {"claude-code-marketplace", "claude-code-plugins", "claude-plugins-official",
                    "claude-plugins-community", "claude-community", "anthropic-marketplace", "anthropic-plugins",
                    "agent-skills", "anthropic-agent-skills", "knowledge-work-plugins", "life-sciences",
                    "claude-for-legal", "claude-for-financial-services", "financial-services-plugins",
                    "first-party-plugins", "healthcare"}
HOOK_EVENTS = {"SessionStart", "Setup", "UserPromptSubmit", "UserPromptExpansion", "PreToolUse", "PermissionRequest",
               "PermissionDenied", "PostToolUse", "PostToolUseFailure", "PostToolBatch", "Notification",
               "SubagentStart", "SubagentStop", "TaskCreated", "TaskCompleted", "Stop", "StopFailure",
               "TeammateIdle", "InstructionsLoaded", "ConfigChange", "CwdChanged", "FileChanged", "PreCompact",
               "PostCompact", "SessionEnd"}
KEBAB = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")


# --------------------------------------------------------------------------- reading a command file


def read_command(name: str) -> tuple[dict[str, str], str]:
    """(frontmatter, body) of .claude/commands/<name>.md; fails on anything but `key: scalar` lines."""
    text = (COMMANDS_DIR / f"{name}.md").read_text()
    assert text.startswith("---\n"), f"{name}.md: the frontmatter must open on the first line"
    head, sep, body = text[4:].partition("\n---\n")
    assert sep, f"{name}.md: the frontmatter is not closed"
    fields: dict[str, str] = {}
    for line in head.splitlines():
        key, colon, value = line.partition(":")
        assert colon and key == key.strip() and KEBAB.match(key.replace("_", "-")), f"{name}.md: bad line {line!r}"
        value = value.strip()
        if value.startswith('"'):
            value = json.loads(value)  # a YAML double-quoted scalar with JSON-compatible escapes
        else:  # a YAML plain scalar: no indicator first, no ": " or " #" inside
            assert value and value[0] not in "[]{}'!&*#|>%@`,?:-", f"{name}.md: {key} needs quotes"
            assert ": " not in value and " #" not in value, f"{name}.md: {key} needs quotes"
        assert key not in fields, f"{name}.md: {key} given twice"
        fields[key] = value
    return fields, body


def render(text: str, mode: str, *, arguments: str = "", project: Path = ROOT, session: str = "cs-1") -> str:
    """The text as Claude Code hands it to the model (plugin mode or project-command mode).

    Observed with claude 2.1.197: a plugin command gets ${CLAUDE_PLUGIN_ROOT},
    ${CLAUDE_PLUGIN_DATA}, ${CLAUDE_PROJECT_DIR}, ${CLAUDE_SESSION_ID} and $ARGUMENTS
    substituted; a project command only the last three.
    """
    if mode == "plugin":
        text = text.replace(PLUGIN_ROOT_VAR, str(ROOT)).replace("${CLAUDE_PLUGIN_DATA}", "/data/orch-inline")
    return (text.replace(PROJECT_DIR_VAR, str(project)).replace("${CLAUDE_SESSION_ID}", session)
            .replace("$ARGUMENTS", arguments))


def launcher_in(body: str, mode: str, project: Path = ROOT) -> str:
    """The launcher the model runs, following the body's rule: a path starting with `$` is a
    project command, which uses the project-dir launcher instead."""
    shown = render(PLUGIN_LAUNCHER, mode, project=project)
    return render(PROJECT_LAUNCHER, mode, project=project) if shown.strip('"').startswith("$") else shown


CODE = re.compile(r'`(' + re.escape(PLUGIN_LAUNCHER) + r'[^`]*)`|^ {4}(' + re.escape(PLUGIN_LAUNCHER) + r'.*)$', re.M)


def orch_lines(body: str) -> list[str]:
    """Every orch command line the body tells the model to run, in order (unrendered)."""
    found = [(m.group(1) or m.group(2)).strip() for m in CODE.finditer(body)]
    return [line for line in found if line != PLUGIN_LAUNCHER]  # the path named alone is no command


def to_run(line: str, body: str, mode: str, *, arguments: str = "", project: Path = ROOT,
           session: str = "cs-1") -> str:
    """One command line as the model would send it to the Bash tool."""
    line = line.replace(PLUGIN_LAUNCHER, "\0")
    line = render(line, mode, arguments=arguments, project=project, session=session)
    return line.replace("\0", launcher_in(body, mode, project))


def allowed_prefixes(fields: dict[str, str], mode: str, project: Path = ROOT) -> list[str]:
    """The Bash(PREFIX:*) rules of allowed-tools, rendered for the mode."""
    rules = [r.strip() for r in render(fields.get("allowed-tools", ""), mode, project=project).split(",")]
    out = []
    for rule in rules:
        m = re.fullmatch(r"Bash\((.+):\*\)", rule)
        if m:
            out.append(m.group(1))
    return out


def covered(command: str, prefixes: list[str]) -> bool:
    """True when every `&&` part of the command starts with an allowed prefix (quotes aside)."""
    for part in command.split("&&"):
        words = shlex.split(part.strip())
        if not words or not any(words[0] == p or (words[0] + " ").startswith(p + " ") for p in prefixes):
            return False
    return True


def orch_argv(command: str) -> list[list[str]]:
    """The orch arguments (after the launcher) of each `&&` part of a command line."""
    return [shlex.split(part.strip())[1:] for part in command.split("&&")]


def click_command(argv: list[str]) -> tuple[click.Command, list[str]]:
    """The click command an orch argv reaches, and the remaining arguments."""
    cmd: click.Command = cli
    rest = list(argv)
    while isinstance(cmd, click.Group) and rest and not rest[0].startswith("-"):
        sub = cmd.get_command(click.Context(cmd), rest[0])
        assert sub is not None, f"orch has no command {' '.join(argv[: len(argv) - len(rest) + 1])!r}"
        cmd, rest = sub, rest[1:]
    return cmd, rest


# --------------------------------------------------------------------------- manifests


def test_both_manifests_are_one_file_claude_code_reads_at_dot_claude_plugin():
    top, real = ROOT / "plugin.json", ROOT / ".claude-plugin" / "plugin.json"
    assert real.is_file() and not real.is_symlink(), "Claude Code reads .claude-plugin/plugin.json: keep it a file"
    assert json.loads(top.read_text()) == json.loads(real.read_text())
    assert top.is_symlink() and os.readlink(top) == ".claude-plugin/plugin.json"


def test_manifest_fields_are_documented_and_true_to_the_tree():
    m = json.loads((ROOT / ".claude-plugin" / "plugin.json").read_text())
    assert set(m) <= MANIFEST_KEYS, set(m) - MANIFEST_KEYS
    assert KEBAB.match(m["name"]) and m["name"] == "orch"
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert m["version"] == pyproject["project"]["version"] == __version__
    assert m["description"] and isinstance(m["keywords"], list) and m["author"]["name"]
    assert m["commands"] == "./.claude/commands/" and (ROOT / m["commands"]).is_dir()
    assert "hooks" not in m, "hooks/hooks.json is loaded from its default place; naming it again duplicates it"


def test_marketplace_serves_this_plugin_from_the_repository_root():
    market = json.loads((ROOT / ".claude-plugin" / "marketplace.json").read_text())
    assert set(market) <= MARKET_KEYS
    assert KEBAB.match(market["name"]) and market["name"] not in RESERVED_MARKETS
    assert market["owner"]["name"]
    (entry,) = market["plugins"]
    assert set(entry) <= MARKET_ENTRY_KEYS
    manifest = json.loads((ROOT / ".claude-plugin" / "plugin.json").read_text())
    assert entry["name"] == manifest["name"]
    assert (ROOT / entry["source"] / ".claude-plugin" / "plugin.json").resolve() == \
        (ROOT / ".claude-plugin" / "plugin.json").resolve()
    assert "version" not in entry, "the version lives in plugin.json only"


def test_hooks_json_registers_the_three_hooks_through_the_wrapper():
    config = json.loads((ROOT / "hooks" / "hooks.json").read_text())
    assert set(config) <= {"description", "hooks"}
    assert set(config["hooks"]) <= HOOK_EVENTS
    seen = {}
    for event, groups in config["hooks"].items():
        for group in groups:
            assert set(group) <= {"matcher", "hooks"}
            for handler in group["hooks"]:
                assert handler["type"] == "command" and 0 < handler["timeout"] <= 600
                words = shlex.split(handler["command"])
                assert words[0] == f"{PLUGIN_ROOT_VAR}/hooks/orch-hook", "quote the path: it may hold spaces"
                assert len(words) == 2
                seen[event] = (group.get("matcher"), words[1])
    assert seen == {"Stop": (None, "stop"), "PostToolUse": ("TodoWrite|TaskCreate|TaskUpdate", "todo"),
                    "SessionStart": ("compact|resume", "context")}
    wrapper = ROOT / "hooks" / "orch-hook"
    assert wrapper.is_file() and os.access(wrapper, os.X_OK)
    for _, sub in seen.values():
        click_command(["hook", sub])


# --------------------------------------------------------------------------- commands


def test_exactly_the_seven_commands_are_there():
    assert {p.stem for p in COMMANDS_DIR.glob("*.md")} == SEVEN
    assert not any(p.is_dir() for p in COMMANDS_DIR.iterdir()), "a subfolder would become a namespace"


@pytest.mark.parametrize("name", sorted(SEVEN))
def test_frontmatter_parses_with_documented_keys_only(name):
    fields, body = read_command(name)
    assert set(fields) <= COMMAND_KEYS, set(fields) - COMMAND_KEYS
    assert fields["description"] and len(fields["description"]) < 200
    assert "allowed-tools" in fields and body.strip()
    assert "$ARGUMENTS" in body, "without it Claude Code appends the arguments at the end of the prompt"


@pytest.mark.parametrize("name", sorted(SEVEN))
def test_no_shell_step_names_the_plugin_root(name):
    # claude 2.1.197: a `!` step containing ${CLAUDE_PLUGIN_ROOT} fails its permission check
    # ("Contains expansion") when the file runs as a project command, and a failing step aborts
    # the whole command. The model runs orch through the Bash tool instead.
    _, body = read_command(name)
    assert "!`" not in body and "```!" not in body


@pytest.mark.parametrize("name", sorted(SEVEN))
@pytest.mark.parametrize("mode", ["plugin", "project"])
def test_every_orch_call_exists_and_is_allowed_in_both_modes(name, mode):
    fields, body = read_command(name)
    lines = orch_lines(body)
    assert lines, f"{name}.md runs no orch command"
    prefixes = allowed_prefixes(fields, mode)
    assert LAUNCHER.is_file() and os.access(LAUNCHER, os.X_OK)
    for line in lines:
        command = to_run(line, body, mode)  # the options the file itself writes; $ARGUMENTS is the user's
        assert covered(command, prefixes), f"{name}.md ({mode}): {command!r} is not covered by {prefixes}"
        for argv in orch_argv(command):
            cmd, rest = click_command(argv)
            options = {o for p in cmd.params for o in p.opts if o.startswith("-")}
            for word in rest:
                if word.startswith("-") and word != "--":
                    assert word in options, f"{name}.md: orch {' '.join(argv)}: no option {word}"
    assert render(PLUGIN_LAUNCHER, "plugin") == f'"{LAUNCHER}"'
    assert launcher_in(body, "project") == f'"{LAUNCHER}"'


@pytest.mark.parametrize("name,sub", sorted(THIN.items()))
def test_each_thin_command_runs_its_own_subcommand_with_the_arguments(name, sub):
    fields, body = read_command(name)
    first = orch_lines(body)[0]
    wanted = {"monitor": "monitor --once $ARGUMENTS"}.get(sub, f"{sub} $ARGUMENTS")
    assert first == f"{PLUGIN_LAUNCHER} {wanted}"
    assert PROJECT_LAUNCHER in body, "the project-command fallback must be named"
    assert "no active orch session" in body, "it must say what to tell the user when there is no session"


def test_orchestrate_encodes_the_loop_and_its_rules():
    fields, body = read_command("orchestrate")
    assert {"TodoWrite", "TaskCreate", "TaskUpdate"} <= {t.strip() for t in fields["allowed-tools"].split(",")}
    assert fields["disable-model-invocation"] == "true"
    lines = orch_lines(body)
    assert lines[0] == (f'{PLUGIN_LAUNCHER} start "$ARGUMENTS" && {PLUGIN_LAUNCHER} hook claim ${{CLAUDE_SESSION_ID}}'
                        f' && {PLUGIN_LAUNCHER} step')
    cycle = dict(re.findall(r"^\d\. \*\*(\w+)\*\* — `([^`]+)`$", body, re.M))
    assert cycle == {"Monitor": f"{PLUGIN_LAUNCHER} wait --timeout 60", "Check": f"{PLUGIN_LAUNCHER} check",
                     "Assign": f"{PLUGIN_LAUNCHER} step"}
    assert f"    {PLUGIN_LAUNCHER} report" in body.splitlines()
    low = body.lower()
    for rule in ("exactly one", "never wait without a pending `orch wait`", "never assume an agent is done",
                 "parse output as soon as it lands", "never leave an agent idle while work remains",
                 "never stop while the criteria fail", "fixed and verified", "report with evidence",
                 "after a context compaction", "only when `orch check` exits 0", "never a longer timeout"):
        assert rule in low, rule
    assert low.index("## 1. start") < low.index("## 2. the cycle") < low.index("## 3. finalize")

"""What a denied shell command looks like to a CLI's permission rule.

Claude Code allows exactly one command (`Bash(cmd)`), Gemini CLI a command and anything
after it (`run_shell_command(cmd)`, a prefix). A rule only covers one simple command: for
a compound line (`a && b`, pipes, redirections, substitutions) the CLIs check each part on
its own, so no single narrow rule lets it through, and a comma would be split by gemini's
flag parser. Such commands get no narrow grant; the ladder climbs a whole level instead.
"""

from __future__ import annotations

import uuid
from typing import Any, Optional

from ..core.errors import InvalidInput

#: Characters that make a command line more than one simple command (or that the
#: rule syntax itself cannot carry: parentheses close the rule, commas split the flag).
_NOT_SIMPLE = frozenset(";&|`$<>()\n\r,\\*")
#: Longest command a narrow rule is built for; longer lines are scripts, not commands.
MAX_RULE_COMMAND = 300
#: Programs a prefix rule is never built for, whatever their arguments: they run other
#: programs (`Bash(bash:*)` runs anything), delete, or reach the network, so any prefix
#: also covers calls far beyond the one that was denied.
NEVER_PREFIX = frozenset({
    "sh", "bash", "zsh", "dash", "ksh", "fish", "csh", "tcsh", "busybox", "env", "sudo", "doas", "su",
    "pkexec", "xargs", "eval", "exec", "command", "builtin", "source", ".", "nohup", "timeout", "nice",
    "ionice", "stdbuf", "setsid", "watch", "time", "strace", "chroot", "unshare", "nsenter", "rm", "rmdir",
    "shred", "unlink", "dd", "find", "chmod", "chown", "chgrp", "ssh", "scp", "rsync", "nc", "ncat", "socat",
    "curl", "wget",
})
#: Programs whose bare name as a prefix would allow all of their subcommands.
BARE_TOO_BROAD = frozenset({"git", "npm", "npx", "pnpm", "yarn", "pip", "pip3", "cargo", "go", "docker",
                            "kubectl", "gh", "python", "python3", "node", "perl", "ruby", "php", "deno", "bun"})
#: Interpreters whose eval flag turns a prefix rule into "run any code".
EVAL_FLAGS = {"python": {"-c"}, "python3": {"-c"}, "node": {"-e", "--eval", "-p", "--print"},
              "perl": {"-e", "-E"}, "ruby": {"-e"}, "php": {"-r"}, "deno": {"eval"}, "bun": {"-e", "--eval"}}


def simple_command(command: Any) -> Optional[str]:
    """The command trimmed, when one prefix rule can cover it exactly; otherwise None."""
    if not isinstance(command, str):
        return None
    command = " ".join(command.split())
    if not command or len(command) > MAX_RULE_COMMAND:
        return None
    if any(ch in _NOT_SIMPLE for ch in command):
        return None
    if command[0] in "-'\"":
        return None
    return command


def prompt_arg(prompt: str) -> str:
    """The prompt as one argv element that no CLI's flag parser mistakes for an option."""
    # A prompt starting with "-" would be read as a flag by commander, yargs and clap;
    # a leading space changes nothing for the model.
    return " " + prompt if prompt.startswith("-") else prompt


def session_uuid(cli: str, value: Optional[str]) -> str:
    """The session id to pin a new run to: the given one (it must be a UUID) or a fresh one."""
    if value is None:
        return str(uuid.uuid4())
    try:
        return str(uuid.UUID(value))
    except (ValueError, AttributeError, TypeError):
        raise InvalidInput(f"{cli} session ids are UUIDs; {value!r} is not one") from None


def session_flags(cli: str, resume: bool, value: Optional[str]) -> tuple[list[str], str]:
    """`--resume ID` for a resume, else `--session-id UUID` pinning a new session; and the id."""
    if resume:
        session_id = resume_id(cli, value)
        return ["--resume", session_id], session_id
    session_id = session_uuid(cli, value)
    return ["--session-id", session_id], session_id


def resume_id(cli: str, value: Optional[str]) -> str:
    """The CLI session id a resume continues; a one-line error when there is none."""
    if not value or not isinstance(value, str) or value.startswith("-") or any(c.isspace() for c in value):
        raise InvalidInput(f"cannot resume a {cli} run without its session id (got {value!r})")
    return value

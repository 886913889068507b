"""One module per command or family of commands; each exposes COMMANDS (click commands).

`REGISTRY` maps every command name to its module, so that `orch status` imports only
commands/status.py and what it needs — not the coordinator, the watcher or the server.
A test checks that the registry and the modules' COMMANDS lists agree.
"""

REGISTRY: dict[str, str] = {
    "abort": "launch",
    "allow": "recovery",
    "audit": "recovery",
    "budget": "budget",
    "check": "check",
    "clean": "worktrees",
    "demo": "session",
    "deny": "recovery",
    "hook": "hook",
    "land": "worktrees",
    "launch": "launch",
    "list": "status",
    "logs": "logs",
    "monitor": "waiting",
    "notify": "notify",
    "parse": "parse",
    "pick": "race",
    "policy": "policy",
    "report": "session",
    "resume": "session",
    "retry": "retry",
    "run": "session",
    "schema": "schema",
    "serve": "serve",
    "sessions": "session",
    "start": "session",
    "status": "status",
    "step": "session",
    "verify": "verify",
    "wait": "waiting",
}

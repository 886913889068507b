"""Codex CLI (`codex exec --json --skip-git-repo-check …`).

Facts from REAL_CLIS.md: a command refused by the sandbox, a rejected apply_patch and a
refused escalation produce no stdout item at all. The refusal shows in what goes back to
the model (so in a later `agent_message`, e.g. "Read-only file system"), in the session
rollout file (every denied call, with its call id), and — for the refusals codex's tool
handlers answer before anything runs (a rejected patch, an escalation under approval
`never`, an exec-policy rule) — as an `ERROR codex_core::tools::router` line on stderr.
The three describe the same actions; codex_denials.DenialLedger counts each action once.
`turn.completed.usage` is a running total over a resumed thread.

Limits (CLI_PERMISSIONS_SPEC.md, "Usage limits and rate limits"): a plan at its limit
(HTTP 429 `usage_limit_reached`) ends the turn with an `error` line and a `turn.failed`
saying "You’ve hit your usage limit. … try again at 3:12 PM." (local time, minute
precision); a plain 429 with "exceeded retry limit, last status: 429 Too Many Requests".
Either is one LIMIT_HIT. The rollout's `token_count` events carry the plan's windows
(used_percent, window_minutes, resets_at): one at 75% or more is a LIMIT_WARNING, and a
`task_complete` with `codex_error_info: usage_limit_exceeded` is the LIMIT_HIT when stdout
did not say it — both of the rollout's last turn only, told at finish like its refusals.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Mapping, Optional

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

from ..core.models import AgentEvent, Denial, Outcome, Permission, Usage
from . import limits
from ..spend.pricing import estimate
from .base import Adapter, Command, Grant, LaunchSpec, home_of
from .codex_denials import DenialLedger, classify, kind_level, patch_targets
from .commandline import prompt_arg, resume_id
from .streams import (
    MAX_TEXT,
    MAX_TRACKED,
    CallMemory,
    JsonLineParser,
    K,
    as_int,
    clip,
    clip_tail,
    string_list,
)

#: Codex's own names for "run a shell command" (write_stdin types into one already running).
SHELL_TOOLS = frozenset({"exec_command", "shell", "shell_command", "local_shell", "container.exec", "write_stdin"})

#: codex's patch change kinds in the words the other adapters use.
_CHANGE_KINDS = {"add": "add", "update": "modify", "delete": "delete"}
_validate_usage = Usage.__pydantic_validator__.validate_python  # as Usage(...), without the wrapper
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_THREAD_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{7,80}$")
#: codex's own first warning threshold for a plan window (percent used).
LIMIT_WARNING_PERCENT = 75.0


def codex_usage(usage: Any, model: Optional[str] = None) -> Usage:
    """Usage from turn.completed (input includes cached input); codex reports no cost: estimated."""
    u = usage if isinstance(usage, dict) else {}
    return estimate(_validate_usage({"input_tokens": as_int(u.get("input_tokens")),
                                     "output_tokens": as_int(u.get("output_tokens")),
                                     "cached_input_tokens": as_int(u.get("cached_input_tokens")), "model": model}))


#: codex names a model it has no metadata for in an error item; the name is still the model used.
_UNKNOWN_MODEL = re.compile(r"Model metadata for `([^`]{1,200})` not found")


def error_text(message: Any) -> str:
    """A codex error message; the provider's JSON error body is reduced to code and message."""
    text = message if isinstance(message, str) else json.dumps(message)[:2000]
    if text.startswith("{"):
        try:
            body = json.loads(text)
            err = body.get("error") if isinstance(body, dict) else None
            if isinstance(err, dict) and isinstance(err.get("message"), str):
                code = err.get("code") or err.get("type")
                return f"{code}: {err['message']}" if code else err["message"]
        except (ValueError, RecursionError):
            pass
    return text


class CodexStreamParser(JsonLineParser):
    """Normalizes codex's --json stdout, its stderr and its rollout file into AgentEvents."""

    def load_state(self, state: dict[str, Any]) -> None:
        super().load_state(state)
        state = state if isinstance(state, dict) else {}
        # Item ids already counted as tool calls; ids restart at item_0 with every turn.
        self.started = set(string_list(state.get("started")))
        self.calls = CallMemory(state.get("calls"))  # rollout call_id -> (tool, target)
        self.ledger = DenialLedger(state.get("ledger"))
        last_text = state.get("last_text")
        self.last_text = last_text if isinstance(last_text, str) else None
        last_error = state.get("last_error")
        self.last_error = last_error if isinstance(last_error, str) else None
        turn = state.get("rollout_turn")
        self.rollout_turn = turn if isinstance(turn, str) else None
        refusals = state.get("rollout_refusals")
        self.rollout_refusals = [r for r in refusals if _is_refusal(r)][:MAX_TRACKED] if isinstance(refusals, list) else []
        self.limit_warned = string_list(state.get("limit_warned"), 16)  # plan windows warned about
        held = state.get("rollout_limits")  # the rollout's limit news of its last turn, told at finish
        self.rollout_limits = [h for h in held if isinstance(h, dict)][:16] if isinstance(held, list) else []
        unpriced = state.get("unpriced")  # the last turn.completed usage, while its model was unknown
        self.unpriced = unpriced if isinstance(unpriced, dict) else None

    def state(self) -> dict[str, Any]:
        s = super().state()
        s.update(started=sorted(self.started), calls=self.calls.dump(), ledger=self.ledger.dump(),
                 last_text=self.last_text, last_error=self.last_error, rollout_turn=self.rollout_turn,
                 rollout_refusals=[list(r) for r in self.rollout_refusals], limit_warned=self.limit_warned,
                 rollout_limits=self.rollout_limits, unpriced=self.unpriced)
        return s

    # ---- stdout: one handler per line type (stdout_handlers, below the class); other
    # types reach on_stdout, the default, which keeps them as unknown events.

    def _thread_started(self, obj: dict[str, Any]) -> list[AgentEvent]:
        return self.session_started(obj.get("thread_id"))

    def _turn_started(self, obj: dict[str, Any]) -> list[AgentEvent]:
        self.started.clear()
        return []  # nothing beyond "alive", which the growing file already says

    def _turn_completed(self, obj: dict[str, Any]) -> list[AgentEvent]:
        raw = obj.get("usage")
        # stdout does not name the model; the rollout (read when the run ends) does.
        self.unpriced = raw if self.model is None and isinstance(raw, dict) else None
        return self.run_finished(Outcome.SUCCESS, self.last_text, codex_usage(raw, self.model), cumulative=True)

    def finish(self, exit_code: Optional[int]) -> list[AgentEvent]:
        """As every parser, plus the run's usage priced again once the rollout named the model."""
        events = super().finish(exit_code)
        if self.unpriced is not None and not self.model:
            self.model = configured_model(os.environ)
        if self.unpriced is not None and self.model:
            events.append(AgentEvent(kind=K.USAGE, stream="exit", usage=codex_usage(self.unpriced, self.model),
                                     usage_cumulative=True))
            self.unpriced = None
        return events

    def _turn_failed(self, obj: dict[str, Any]) -> list[AgentEvent]:
        err = obj.get("error")
        message = error_text((err.get("message") if isinstance(err, dict) else err) or "turn failed")
        return self._error(message) + self.run_finished(Outcome.ERROR, self.last_text, message=clip(message))

    def _error_line(self, obj: dict[str, Any]) -> list[AgentEvent]:
        message = error_text(obj.get("message") or "error")
        if message.startswith("Reconnecting"):
            return [self.event(K.STATUS, status="retrying", message=clip(message))]
        return self._error(message)

    def _error(self, message: str) -> list[AgentEvent]:
        # turn.failed repeats the error line just before it: report it once.
        message = clip(message)
        if message == self.last_error:
            return []
        self.last_error = message
        return self._limit(message, limits.now()) + [self.event(K.ERROR, message=message)]

    def _limit(self, message: Optional[str], reference: Any, info: Any = None) -> list[AgentEvent]:
        """LIMIT_HIT when codex's error words say a usage limit or an exhausted 429 (once per run)."""
        if not message or self.limit_reported:
            return []
        if info == "usage_limit_exceeded" or limits.is_codex_usage_text(message):
            return self.limit_hit(limits.USAGE, None, limits.codex_reset_from_text(message, reference), message)
        if limits.is_codex_rate_text(message):
            return self.limit_hit(limits.RATE, None, None, message)
        return []

    def _item(self, obj: dict[str, Any]) -> list[AgentEvent]:
        item = obj.get("item")
        if type(item) is not dict:
            return [self.unknown(obj)]
        kind = item.get("type")
        phase = obj.get("type")
        done = phase == "item.completed"
        if kind == "agent_message":
            if not done:
                return []
            text = item.get("text")
            if not isinstance(text, str) or not text:
                return []
            self.say(text)
            if len(text) > MAX_TEXT:
                text = clip_tail(text, MAX_TEXT)
            self.last_text = text
            events = [self.event(K.TEXT, text=text)]
            found = classify(text)
            if found:
                for denial_kind, target, snippet in found:
                    events += self.ledger.observe(self, denial_kind, "text", None, target, snippet)
            return events
        if kind == "command_execution":
            return self._tool_item(item, done, "shell", item.get("command"))
        if kind == "file_change":
            changes = item.get("changes")
            changes = [c for c in changes if type(c) is dict] if isinstance(changes, list) else []
            paths = [c.get("path") for c in changes if isinstance(c.get("path"), str)]
            events = self._tool_item(item, done, "apply_patch", ", ".join(paths) or None)
            if done and item.get("status") == "completed":
                for change in changes:
                    path = change.get("path")
                    if isinstance(path, str) and path:
                        change_kind = change.get("kind")
                        words = _CHANGE_KINDS.get(change_kind, "modify") if isinstance(change_kind, str) else "modify"
                        events.append(self.event(K.FILE_CHANGED, tool="apply_patch", path=clip(path), change=words))
            return events
        if kind == "mcp_tool_call":
            name = clip(f"{item.get('server') or 'mcp'}.{item.get('tool') or 'tool'}", 200)
            return self._tool_item(item, done, name, None)
        if kind == "web_search":
            return self._tool_item(item, done, "web_search", item.get("query"))
        if kind == "error":
            message = error_text(item.get("message") or "error")
            named = _UNKNOWN_MODEL.search(message)
            if named:
                self.model = named.group(1)
            return self._error(message) if done else []
        if kind == "reasoning" or kind == "todo_list":
            return []  # the model's notes to itself: nothing orch acts on
        return [self.unknown(obj, raw_type=f"{phase}/{kind}")]

    def _tool_item(self, item: dict[str, Any], done: bool, tool: str, target: Any) -> list[AgentEvent]:
        item_id = item.get("id")
        item_id = item_id if isinstance(item_id, str) else None
        target = clip(target)
        events = []
        if item_id is None or item_id not in self.started:
            # Some items arrive only completed; they are still tool calls.
            if item_id is not None:
                if len(self.started) >= MAX_TRACKED:
                    self.started.clear()  # a turn this long has finished its early items
                self.started.add(item_id)
            events.append(self.event(K.TOOL_STARTED, tool=tool, tool_id=item_id, target=target))
        if not done:
            return events
        status = item.get("status")
        exit_code = item.get("exit_code")
        ok = status == "completed" and exit_code in (None, 0)
        output = item.get("aggregated_output")
        message = clip(output[-2000:]) if isinstance(output, str) and not ok else None
        events.append(self.event(K.TOOL_FINISHED, tool=tool, tool_id=item_id, target=target, ok=ok,
                                 message=message))
        if status == "declined":
            events += self.ledger.observe(self, "declined", "item", tool, target, f"{tool} was declined",
                                          tool_id=item_id)
        elif not ok and isinstance(output, str):
            found = classify(output[-8000:])
            if found:  # one call, one refusal
                denial_kind, found_target, snippet = found[0]
                events += self.ledger.observe(self, denial_kind, "item", tool, found_target or target, snippet,
                                              tool_id=item_id)
        return events

    # ---- stderr
    def on_stderr(self, text: str) -> list[AgentEvent]:
        if "\x1b" in text:
            text = _ANSI.sub("", text)
        if "codex_core::tools::router" in text:
            message = text.split("error=", 1)[1] if "error=" in text else text
            found = classify(message)
            if not found:
                return [self.event(K.STATUS, status="tool_error", message=clip(message))]
            denial_kind, target, snippet = found[0]  # one router line, one refused action
            return self.ledger.observe(self, denial_kind, "stderr", None, target, snippet)
        if " ERROR " in text or text.startswith(("Error", "error:")):
            return self.stderr_error(text)
        return []

    # ---- rollout ($CODEX_HOME/sessions/…/rollout-*-<thread_id>.jsonl)
    # The rollout is read for refusals only: everything else in it repeats stdout. A
    # resumed thread appends its turns to the same file, so a refusal counts only when it
    # belongs to the file's last turn, this run's: refusals are held per turn and
    # reported by flush(), when the run is finished.
    def on_rollout(self, obj: dict[str, Any]) -> list[AgentEvent]:
        t = obj.get("type")
        payload = obj.get("payload")
        if type(payload) is not dict:
            return []
        if t == "response_item":
            return self._rollout_item(payload)
        if t == "event_msg":
            kind = payload.get("type")
            if kind == "token_count":
                self._rollout_rate_limits(payload.get("rate_limits"))
                return []
            if kind == "task_complete" or kind == "turn_aborted":
                error = payload.get("error")
                if type(error) is dict and isinstance(error.get("message"), str) and len(self.rollout_limits) < 16:
                    info = error.get("codex_error_info")
                    self.rollout_limits.append({"hit": clip(error["message"]), "at": clip(obj.get("timestamp"), 64),
                                                "info": info if isinstance(info, str) else None})
                return []
            if kind == "task_started":
                attribution = payload.get("turn_attribution")
                turn = attribution.get("turn_id") if isinstance(attribution, dict) else payload.get("turn_id")
                self._rollout_turn_starts(turn if isinstance(turn, str) else None)
            return []
        if t == "turn_context":
            model = payload.get("model")
            if isinstance(model, str) and model:
                self.model = clip(model, 200)
            turn = payload.get("turn_id")
            if isinstance(turn, str) and turn != self.rollout_turn:
                self._rollout_turn_starts(turn)
            return []
        if t == "session_meta" and self.session_id is None:
            return self.session_started(payload.get("id"))
        return []

    def _rollout_rate_limits(self, snapshot: Any) -> None:
        """Hold a plan window at 75% or more (below 100%: at 100% the run's error is the hit)."""
        if type(snapshot) is not dict:
            return
        for name in ("primary", "secondary"):
            window = snapshot.get(name)
            if type(window) is not dict:
                continue
            used = window.get("used_percent")
            if isinstance(used, bool) or not isinstance(used, (int, float)) or not LIMIT_WARNING_PERCENT <= used < 100:
                continue
            minutes = window.get("window_minutes")
            held = {"window": name, "used_percent": used, "window_minutes": minutes if isinstance(minutes, int) else None,
                    "resets_at": window.get("resets_at") if isinstance(window.get("resets_at"), (int, float)) else None}
            self.rollout_limits = [h for h in self.rollout_limits if h.get("window") != name] + [held]

    def _rollout_limit_events(self) -> list[AgentEvent]:
        """The held limit news of the rollout's last turn: warnings (once per window), the hit."""
        events: list[AgentEvent] = []
        for held in self.rollout_limits:
            if "hit" in held:
                reference = limits.from_iso(held.get("at")) or limits.now()
                events += self._limit(held["hit"], reference, held.get("info"))
                continue
            scope = limits.codex_scope(held.get("window_minutes"))
            key = f"{held.get('window')}:{scope}"
            if key in self.limit_warned:
                continue
            self.limit_warned.append(key)
            events += self.limit_warning(limits.USAGE, scope, limits.from_epoch(held.get("resets_at")),
                                         f"{held.get('used_percent'):g}% of the {scope or held.get('window')} limit used",
                                         {k: held.get(k) for k in ("window", "used_percent", "window_minutes")})
        self.rollout_limits = []
        return events

    def _rollout_turn_starts(self, turn: Optional[str]) -> None:
        self.rollout_turn = clip(turn, 200)
        self.rollout_refusals = []
        self.rollout_limits = []

    def _rollout_item(self, payload: dict[str, Any]) -> list[AgentEvent]:
        kind = payload.get("type")
        call_id = payload.get("call_id")
        if not isinstance(call_id, str):
            return []
        if kind == "function_call" or kind == "custom_tool_call" or kind == "local_shell_call":
            tool, target = _rollout_call(payload)
            self.calls.put(call_id, tool, target)
        elif kind == "function_call_output" or kind == "custom_tool_call_output":
            tool, target = self.calls.finish(call_id)
            found = classify(_output_text(payload.get("output"))[-8000:])
            if found and len(self.rollout_refusals) < MAX_TRACKED:
                denial_kind, found_target, snippet = found[0]  # one call, one refusal
                self.rollout_refusals.append([denial_kind, tool, clip(target or found_target), clip(snippet),
                                              clip(call_id, 200)])
        return []

    def flush(self) -> list[AgentEvent]:
        """The rollout's last turn: its refusals as DENIAL events (each action once), its limits."""
        events: list[AgentEvent] = []
        refusals, self.rollout_refusals = self.rollout_refusals, []
        stream, self._stream = self._stream, "rollout"
        for denial_kind, tool, target, snippet, call_id in refusals:
            events += self.ledger.observe(self, denial_kind, "rollout", tool, target, snippet, tool_id=call_id)
        events += self._rollout_limit_events()
        self._stream = stream
        return events


CodexStreamParser.stdout_handlers = {
    "item.completed": CodexStreamParser._item,
    "item.started": CodexStreamParser._item,
    "item.updated": CodexStreamParser._item,
    "thread.started": CodexStreamParser._thread_started,
    "turn.started": CodexStreamParser._turn_started,
    "turn.completed": CodexStreamParser._turn_completed,
    "turn.failed": CodexStreamParser._turn_failed,
    "error": CodexStreamParser._error_line,
}


def _is_refusal(saved: Any) -> bool:
    """A saved rollout refusal: [kind, tool, target, snippet, call_id], strings or None."""
    return (isinstance(saved, list) and len(saved) == 5 and isinstance(saved[0], str)
            and all(v is None or isinstance(v, str) for v in saved))


def _rollout_call(payload: dict[str, Any]) -> tuple[str, Optional[str]]:
    """(tool, target) of a call recorded in the rollout."""
    name = payload.get("name")
    name = name if isinstance(name, str) else None
    if payload.get("type") == "local_shell_call":
        action = payload.get("action")
        return "shell", _command_text(action.get("command") if isinstance(action, dict) else None)
    if payload.get("type") == "custom_tool_call":
        text = payload.get("input")
        paths = patch_targets(text) if isinstance(text, str) else []
        return clip(name, 200) or "custom_tool", clip(", ".join(paths)) if paths else None
    args: Any = payload.get("arguments")
    if isinstance(args, str):
        try:
            args = json.loads(args)
        except (ValueError, RecursionError):
            args = {}
    args = args if isinstance(args, dict) else {}
    if name in SHELL_TOOLS:
        return "shell", _command_text(args.get("cmd") or args.get("command"))
    if name == "apply_patch":
        text = args.get("input") or args.get("patch")
        paths = patch_targets(text) if isinstance(text, str) else []
        return "apply_patch", clip(", ".join(paths)) if paths else None
    return clip(name, 200) or "unknown", None


def _command_text(command: Any) -> Optional[str]:
    """A command given as a string or an argv list, as one line."""
    if isinstance(command, list):
        return clip(" ".join(str(part) for part in command))
    return clip(command) if command else None


def _output_text(output: Any) -> str:
    """A tool output recorded in the rollout: plain text, {output: …} JSON text, or items."""
    if isinstance(output, str):
        if output.startswith("{"):
            try:
                body = json.loads(output)
                if isinstance(body, dict) and isinstance(body.get("output"), str):
                    return body["output"]
            except (ValueError, RecursionError):
                pass
        return output
    if isinstance(output, dict):
        content = output.get("content") or output.get("output")
        return content if isinstance(content, str) else json.dumps(output)[:8000]
    if isinstance(output, list):
        return "\n".join(p.get("text") for p in output if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


class CodexAdapter(Adapter):
    name = "codex"
    BYPASS_OPTIONS = (("--sandbox", "danger-full-access"), ("-s", "danger-full-access"),
                      ("-c", "sandbox_mode=danger-full-access"), ("-c", 'sandbox_mode="danger-full-access"'))
    binary = "codex"
    install_hint = "npm install -g @openai/codex"
    usage_is_cumulative = True

    def state_paths(self, env: Mapping[str, str]) -> tuple[list[Path], list[Path]]:
        """$CODEX_HOME (default ~/.codex): logins, config, sessions and their rollout files."""
        return [Path(env.get("CODEX_HOME") or home_of(env) / ".codex")], []

    def sandboxes_itself(self, grant: Grant) -> bool:
        """Below the bypass codex runs every command and patch in its own sandbox (bubblewrap
        and seccomp: writes to the workspace only, no network below full), which needs mounts
        and a user namespace a Landlock domain forbids (measured with 0.169: "bwrap: setting up
        uid map: Permission denied"; its legacy Landlock backend refuses to run without
        bubblewrap). Only the bypass rung runs unsandboxed, and then under orch's ruleset."""
        return not _bypass(grant)

    def build_command(self, spec: LaunchSpec) -> Command:
        """`codex exec --json --skip-git-repo-check …` or, to resume, `codex exec resume … THREAD PROMPT`."""
        exe = self.executable()
        if spec.resume:
            thread_id = resume_id(self.name, spec.cli_session_id)
            # `exec resume` takes neither --sandbox nor -C: the sandbox comes as config
            # overrides and the folder is the process's working directory.
            argv = [exe, "exec", "resume", "--json", "--skip-git-repo-check"]
            argv += self._options(spec, resume=True)
            argv += [thread_id, prompt_arg(spec.prompt)]
            return Command(argv=argv, env={}, cwd=spec.cwd, cli_session_id=thread_id)
        argv = [exe, "exec", "--json", "--skip-git-repo-check", "-C", str(spec.cwd)]
        argv += self._options(spec, resume=False)
        argv.append(prompt_arg(spec.prompt))
        # codex picks its thread id itself; it arrives in thread.started.
        return Command(argv=argv, env={}, cwd=spec.cwd, cli_session_id=None)

    def _options(self, spec: LaunchSpec, resume: bool) -> list[str]:
        if resume:
            args = sandbox_overrides(spec.grant)
        else:
            args, _ = self.permission_args(spec.grant, spec.cwd)
        if spec.extra_dirs and spec.grant.level is not Permission.READ and not _bypass(spec.grant):
            roots = json.dumps([str(d) for d in spec.extra_dirs])
            args += ["-c", f"sandbox_workspace_write.writable_roots={roots}"]
        if spec.model:
            args += ["-m", spec.model]
        if spec.system_prompt:
            # -c values are TOML; a JSON string literal is a valid TOML basic string.
            args += ["-c", f"developer_instructions={json.dumps(spec.system_prompt)}"]
        return args

    def permission_args(self, grant: Grant, cwd: Path) -> tuple[list[str], dict[str, str]]:
        """read: read-only sandbox; edit: workspace-write without /tmp; full: + /tmp and network."""
        if _bypass(grant):
            return ["--dangerously-bypass-approvals-and-sandbox"], {}
        if grant.level is Permission.READ:
            return ["--sandbox", "read-only"], {}
        return ["--sandbox", "workspace-write", *_workspace_write_overrides(grant)], {}

    def level_needed(self, denial: Denial) -> Permission:
        """Writes refused by the read-only sandbox need edit; escalations and the network need full."""
        for kind, _, _ in classify(denial.message):
            return kind_level(kind)
        return Permission.EDIT if denial.tool in ("apply_patch", "shell") else Permission.FULL

    def new_parser(self, state: Optional[dict[str, Any]] = None) -> CodexStreamParser:
        """A parser for codex's --json stdout, its stderr and its rollout file."""
        return CodexStreamParser(state)

    def side_files(self, cli_session_id: Optional[str], env: dict[str, str]) -> list[Path]:
        """The rollout file(s) of a thread: $CODEX_HOME/sessions/YYYY/MM/DD/rollout-*-<thread_id>.jsonl."""
        if not cli_session_id or not _THREAD_ID.match(cli_session_id):
            return []
        home = env.get("CODEX_HOME") or os.path.join(env.get("HOME") or os.path.expanduser("~"), ".codex")
        sessions = Path(home) / "sessions"
        try:
            return sorted(sessions.glob(f"*/*/*/rollout-*-{cli_session_id}.jsonl"))
        except OSError:
            return []


def configured_model(env: Any) -> Optional[str]:
    """The `model` of $CODEX_HOME/config.toml: what codex uses when no rollout names one."""
    home = env.get("CODEX_HOME") or os.path.join(env.get("HOME") or os.path.expanduser("~"), ".codex")
    try:
        with open(os.path.join(home, "config.toml"), "rb") as f:
            model = tomllib.load(f).get("model")
    except (OSError, ValueError):
        return None
    return clip(model, 200) if isinstance(model, str) and model else None


def _bypass(grant: Grant) -> bool:
    return grant.level is Permission.FULL and grant.dangerous


def _workspace_write_overrides(grant: Grant) -> list[str]:
    if grant.level is Permission.FULL:
        return ["-c", "sandbox_workspace_write.network_access=true"]
    # edit: the workspace only; by default workspace-write also opens /tmp and $TMPDIR.
    return ["-c", "sandbox_workspace_write.exclude_slash_tmp=true",
            "-c", "sandbox_workspace_write.exclude_tmpdir_env_var=true"]


def sandbox_overrides(grant: Grant) -> list[str]:
    """The grant as `-c` overrides, the only form `codex exec resume` accepts."""
    if _bypass(grant):
        return ["--dangerously-bypass-approvals-and-sandbox"]
    if grant.level is Permission.READ:
        return ["-c", 'sandbox_mode="read-only"']
    return ["-c", 'sandbox_mode="workspace-write"', *_workspace_write_overrides(grant)]

"""The sim agent: a headless coding-agent CLI without a model or a network.

    python -m orchestrator.sim -p PROMPT --role ROLE [--format claude|codex|gemini]
        [--permission read|edit|full] [--allow PATTERN]... [--dangerous]
        [--session-id ID | --resume ID] [--pace SECONDS]

It does real work in its working directory (a spec for an architect, code and tests for an
implementer, a verdict for a reviewer), streams JSONL in the chosen real CLI's shape, keeps
its conversation across resumes, and honours permissions the way that CLI does, so a
denied action shows up exactly as the real CLI would show it.

Directives anywhere in the prompt, `[sim: key=value ...]`, make it misbehave on purpose
(`[sim@ROLE: …]`, `[sim@FORMAT: …]` or `[sim@ROLE/FORMAT: …]` only for that member):
  stall=S        print one line, then nothing for S seconds, then carry on (a bare `stall`:
                 $ORCH_SIM_STALL seconds, 60 by default)
  hang           print the opening line, then nothing, ever
  fail=STATUS    a model error (HTTP STATUS, default 500); fail=quota or quota: a 429 rate-limit error;
                 fail=billing or billing: a 429 insufficient_quota (the account is out of credit)
  limit=S        the CLI's own usage/rate-limit refusal, resetting S seconds from now (default
                 3600), exit as that CLI does (claude 1, codex 1, gemini 173): claude's
                 rate_limit_event + "You've hit your session limit · resets …", codex's
                 "You’ve hit your usage limit. … try again at …", gemini's per-minute quota
                 with "Please retry in Ss." (its 10 attempts on stderr when S <= 300)
  login          the CLI is not logged in: "Not logged in · Please run /login", exit 1
  lazy           say the task is done without doing anything (no tool call, no file), exit 0
  linger=S       after the final result, stay alive S seconds before exiting (a CLI still flushing)
  exit=N         exit with N before printing anything (a message on stderr)
  silent=S       print nothing at all, exit 0 after S seconds
  garbage=N      print N lines that are not JSON, exit 3
  lines=N interval=S   a steady stream of N text lines (load tests)
  duration=S     spread the work over about S seconds; pace=S per action
  write=PATH / shell=CMD / deny=write|shell   an extra action (deny: one this level refuses)
  append=PATH    an extra action: add a line naming this sim (its role and session) to PATH
  careful        implement every edge case the first time (no review findings)
  thorough       a reviewer also checks that each broken edge case has a test (the gemini format
                 always does): findings the others do not make
  failing-tests  an implementer writes the tests of every edge case but its hasty code: its own tests
                 fail (a race candidate the tests reject)
  race=COMP[:N]  an architect marks the task of component COMP "race": N (default 2) and the others
                 "race": 0 in its task list
  ignore-term    ignore SIGTERM (only SIGKILL ends it)
Scopes for the misbehaviours above (not for write/shell/deny/careful/duration/pace):
  role=ROLE      misbehave only when started as ROLE (a goal's directive reaches every role)
  runs=N         misbehave only in the first N runs of that role in this project (the folder,
                 or the repository whose worktrees agents share), then work
"""

from __future__ import annotations

import argparse
import errno
import hashlib
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from . import catalog
from .formats import EMITTERS, Emitter

DIRECTIVE = re.compile(r"\[sim(?:@([\w/-]+))?:([^\]]*)\]")
READ_ONLY_COMMANDS = {"echo", "ls", "cat", "pwd", "head", "tail", "wc", "grep", "find", "git status", "git diff"}
# The sim leaves no __pycache__ behind: in a worktree it would be committed with the work,
# and two agents' bytecode of one file would conflict.
NO_BYTECODE = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
WRITE_HINTS = re.compile(r"(>|\btouch\b|\bmkdir\b|\brm\b|\bmv\b|\bcp\b|\btee\b|\bsed -i\b)")


def parse_directives(prompt: str, role: str = "", fmt: str = "") -> dict[str, str]:
    """`[sim: stall=5 fail=500 garbage]` → {"stall": "5", "fail": "500", "garbage": ""}.

    A block may be scoped to the sim's role, its stream format, or both — `[sim@implementer: …]`,
    `[sim@claude: …]`, `[sim@implementer/claude: …]` — so one goal can make only one member of
    a team misbehave."""
    out: dict[str, str] = {}
    for scope, block in DIRECTIVE.findall(prompt):
        if scope and not set(scope.split("/")) <= {role, fmt}:
            continue
        for tok in shlex.split(block):
            key, _, value = tok.partition("=")
            out[key.strip()] = value
    return out


MISBEHAVIOURS = ("stall", "hang", "fail", "quota", "billing", "limit", "exit", "silent", "garbage", "lines", "ignore-term",
                 "login", "lazy", "linger")


def scope_directives(d: dict[str, str], role: str, cwd: Path) -> dict[str, str]:
    """Drop the misbehaviours that `role=` or `runs=` rule out for this run (and count the run)."""
    if not any(k in d for k in MISBEHAVIOURS):
        return d
    calm = {k: v for k, v in d.items() if k not in MISBEHAVIOURS}
    if d.get("role") and d["role"] != role:
        return calm
    if "runs" in d:
        try:
            limit = int(d["runs"])
        except ValueError:
            limit = 1
        key = hashlib.sha256(f"{project_of(cwd)}|{role}|{sorted(d.items())}".encode()).hexdigest()[:16]
        counter = sim_home() / "runs" / key
        counter.parent.mkdir(parents=True, exist_ok=True)
        with open(counter, "a+") as f:  # one byte per run: appends from parallel runs do not race
            f.write(".")
            f.flush()
            f.seek(0)
            seen = len(f.read())
        if seen > limit:
            return calm
    return d


def project_of(cwd: Path) -> Path:
    """The project a run works on: its folder, or — in a git worktree, where each agent has one —
    the repository the worktrees share, so that `runs=N` counts the runs of a role, not of an agent."""
    cwd = cwd.resolve()
    for d in (cwd, *cwd.parents):
        marker = d / ".git"
        if marker.is_dir():
            if (marker / "HEAD").is_file():  # as git tells a repository: a stray `.git` folder is not one
                return d
            continue
        if marker.is_file():  # "gitdir: <repo>/.git/worktrees/<name>"
            text = marker.read_text(errors="replace").strip()
            gitdir = Path(text.partition("gitdir:")[2].strip())
            return gitdir.parents[1].parent if gitdir.parent.name == "worktrees" else d
    return cwd


def _number(value: str, default: float) -> float:
    """A directive's number; a word or nothing means the default (a typo must not crash the sim)."""
    try:
        return float(value)
    except ValueError:
        return default


def sim_home(env=None) -> Path:
    """Where the sim keeps its conversations: $ORCH_SIM_HOME, else $XDG_STATE_HOME/orch-sim."""
    env = os.environ if env is None else env
    base = env.get("ORCH_SIM_HOME")
    if base:
        return Path(base)
    home = env.get("HOME") or os.path.expanduser("~")
    state = env.get("XDG_STATE_HOME") or os.path.join(home, ".local", "state")
    return Path(state) / "orch-sim"


# --------------------------------------------------------------------------- memory


@dataclass
class Memory:
    """The sim's conversation: what it was asked, and what it still has to retry."""

    session_id: str
    turns: int = 0
    model_turns: int = 0  # over all runs: codex reports thread totals
    prompts: list[str] = field(default_factory=list)
    pending: list[dict[str, Any]] = field(default_factory=list)
    unfinished: str = ""  # a request a limit or an error cut short: a "continue" takes it up again

    @property
    def path(self) -> Path:
        return sim_home() / "sessions" / f"{self.session_id}.json"

    @classmethod
    def load(cls, session_id: str) -> Optional["Memory"]:
        p = sim_home() / "sessions" / f"{session_id}.json"
        try:
            data = json.loads(p.read_text())
        except (FileNotFoundError, ValueError):
            return None
        return cls(session_id, data.get("turns", 0), data.get("model_turns", 0), data.get("prompts", []),
                   data.get("pending", []), data.get("unfinished", ""))

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"turns": self.turns, "model_turns": self.model_turns, "prompts": self.prompts[-20:], "pending": self.pending,
                                   "unfinished": self.unfinished}))
        os.replace(tmp, self.path)


# --------------------------------------------------------------------------- permissions


def _pattern_allows(pattern: str, command: str) -> bool:
    """`Bash(npm test:*)`, `run_shell_command(npm)`, `shell(x)`: does it cover command?"""
    m = re.fullmatch(r"\s*(\w+)\((.*)\)\s*", pattern)
    if not m:
        return pattern in {"Bash", "run_shell_command", "shell"}
    tool, inner = m.group(1), m.group(2).strip()
    if inner.endswith(":*"):
        return command == inner[:-2] or command.startswith(inner[:-2] + " ") or command.startswith(inner[:-2])
    if tool == "Bash":
        return command == inner
    return command == inner or command.startswith(inner + " ")


def may_write(fmt: str, level: str, dangerous: bool, path: Path, cwd: Path) -> bool:
    if dangerous or level == "full":
        return True
    if level != "edit":
        return False
    try:
        path.resolve().relative_to(cwd.resolve())
    except ValueError:
        return False
    return True


def may_run(fmt: str, level: str, dangerous: bool, allow: list[str], command: str) -> bool:
    if dangerous:
        return True
    if any(_pattern_allows(p, command) for p in allow):
        return True
    first = command.split()[0] if command.split() else ""
    read_only = (first in READ_ONLY_COMMANDS or " ".join(command.split()[:2]) in READ_ONLY_COMMANDS) \
        and not WRITE_HINTS.search(command)
    if fmt == "codex":  # the sandbox, not an approval step, decides
        return level in ("edit", "full") or not WRITE_HINTS.search(command)
    if fmt == "gemini":  # shell is not even registered without an allowance
        return level == "full"
    return level == "full" or read_only  # claude: approval-needing commands are refused headless


def os_error(e: OSError, path: Path) -> str:
    """An OS error as node-based CLIs word it: `EACCES: permission denied, open '/x'`."""
    code = errno.errorcode.get(e.errno or 0, "EIO")
    return f"{code}: {(e.strerror or 'error').lower()}, open '{path}'"


def keep_both_sides(text: str) -> str:
    """A file with git's conflict markers, resolved the simple way: ours, then theirs."""
    out: list[str] = []
    side = None
    for line in text.splitlines(keepends=True):
        if line.startswith("<<<<<<< "):
            side = "ours"
        elif side == "ours" and line.startswith("||||||| "):
            side = "base"
        elif side in ("ours", "base") and line.rstrip("\n") == "=======":
            side = "theirs"
        elif side == "theirs" and line.startswith(">>>>>>> "):
            side = None
        elif side != "base":
            out.append(line)
    return "".join(out)


# --------------------------------------------------------------------------- the agent


class SimAgent:
    def __init__(self, args: argparse.Namespace, emitter: Emitter, memory: Memory):
        self.args = args
        self.em = emitter
        self.mem = memory
        self.cwd = Path.cwd()
        self.directives = scope_directives(parse_directives(args.prompt, args.role, args.format), args.role, self.cwd)
        self.pace = _number(self.directives.get("pace", ""), args.pace)
        self.denied = False

    # ---- acts, each honouring the permission the CLI was started with
    def pause(self, scale: float = 1.0) -> None:
        if self.pace > 0:
            time.sleep(self.pace * scale)

    def act(self, action: dict[str, Any]) -> bool:
        """Perform one tool action; on a denial, remember it (and the rest) for a resume."""
        kind = action["kind"]
        self.pause()
        if kind == "write":
            path = (self.cwd / action["path"])
            shown = str(path)
            if not may_write(self.em.fmt, self.args.permission, self.args.dangerous, path, self.cwd):
                self.em.write_denied(shown, action["content"])
                return False
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(action["content"])
            except OSError as e:  # refused by the kernel (or the disk): the tool fails, the run goes on
                self.em.write_failed(shown, action["content"], os_error(e, path))
                return True
            self.em.write_ok(shown, action["content"])
            return True
        if kind == "fix":
            path = self.cwd / action["path"]
            if not may_write(self.em.fmt, self.args.permission, self.args.dangerous, path, self.cwd):
                self.em.write_denied(str(path), action["new"])
                return False
            text = path.read_text() if path.is_file() else ""
            try:
                path.write_text(text.replace(action["old"], action["new"]))
            except OSError as e:
                self.em.write_failed(str(path), action["new"], os_error(e, path))
                return True
            self.em.write_ok(str(path), action["new"])
            return True
        if kind in ("append", "resolve"):
            path = self.cwd / action["path"]
            if not may_write(self.em.fmt, self.args.permission, self.args.dangerous, path, self.cwd):
                self.em.write_denied(str(path), action.get("line", ""))
                return False
            text = path.read_text(errors="replace") if path.is_file() else ""
            text = text + action["line"] if kind == "append" else keep_both_sides(text)
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
            except OSError as e:
                self.em.write_failed(str(path), text, os_error(e, path))
                return True
            self.em.write_ok(str(path), text)
            return True
        if kind == "shell":
            cmd = action["command"]
            if not may_run(self.em.fmt, self.args.permission, self.args.dangerous, self.args.allow, cmd):
                self.em.shell_denied(cmd)
                return False
            try:
                proc = subprocess.run(cmd, shell=True, cwd=self.cwd, capture_output=True, text=True, timeout=120,
                                      env=NO_BYTECODE)
                output, code = (proc.stdout + proc.stderr).strip(), proc.returncode
            except subprocess.TimeoutExpired:
                output, code = "timed out", 124
            self.em.shell_ok(cmd, output[-4000:], code)
            return True
        if kind == "read":
            path = self.cwd / action["path"]
            content = path.read_text(errors="replace") if path.is_file() else ""
            self.em.read_ok(str(path), content)
            return True
        if kind == "text":
            self.em.text(action["text"])
            return True
        raise ValueError(f"unknown action {kind}")

    def run_plan(self, plan: list[dict[str, Any]]) -> bool:
        """Run actions in order; stop at the first denial and keep the rest pending."""
        for i, action in enumerate(plan):
            self.mem.pending = plan[i:]
            self.mem.save()  # a run killed mid-plan resumes with what was left
            if not self.act(action):
                self.denied = True
                return False
        self.mem.pending = []
        return True

    # ---- work by role
    def plan_for_prompt(self) -> tuple[list[dict[str, Any]], str]:
        p = self.args.prompt
        role = self.args.role
        low = p.lower()
        d = self.directives
        plan: list[dict[str, Any]] = []
        if "resolve the merge conflict" in low:  # a merge task: only the resolution, no extra actions
            return self.resolve_plan(), "merge"
        if "write" in d:
            plan.append({"kind": "write", "path": d["write"], "content": f"written by the sim {role}\n"})
        if "append" in d:
            plan.append({"kind": "append", "path": d["append"],
                         "line": f"{role} {self.mem.session_id} was here\n"})
        if "shell" in d:
            plan.append({"kind": "shell", "command": d["shell"]})
        if "deny" in d:  # try the action this permission level refuses
            if d["deny"] == "shell":
                plan.append({"kind": "shell", "command": "touch sim-denied-shell.txt"})
            else:
                plan.append({"kind": "write", "path": "sim-denied-write.txt", "content": "should this be allowed?\n"})
        if re.search(r"\bverif(y|ication)\b", low) and re.search(r"\bB-\d+\b", p):
            return plan + self.verify_plan(), "verify"
        if role == "reviewer" or "verdict" in low:
            return plan + self.review_plan(), "review"
        if re.search(r"\bfix\b", low) and (re.search(r"\bB-\d+\b", p) or re.search(r"\bR\d+\b", p)):
            return plan + self.fix_plan(), "fix"
        if role == "architect" and re.search(r"\bwrite (the|a) spec", low):
            return plan + self.spec_plan(), "spec"
        if re.search(r"\bimplement\b", low):
            return plan + self.implement_plan(), "implement"
        return plan, "chat"

    def goal(self) -> str:
        m = re.search(r"(?im)^goal:\s*(.+)$", self.args.prompt)
        return m.group(1).strip() if m else self.args.prompt.strip().splitlines()[0][:120]

    def spec_plan(self) -> list[dict[str, Any]]:
        pkg = catalog.package_name(self.goal())
        return [{"kind": "text", "text": "I will write the specification, the package and a test of it."},
                {"kind": "write", "path": catalog.SPEC_FILE, "content": catalog.render_spec(self.goal())},
                {"kind": "write", "path": f"{pkg}/__init__.py", "content": catalog.package_init()},
                {"kind": "write", "path": "tests/__init__.py", "content": ""},
                {"kind": "write", "path": catalog.PACKAGE_TEST, "content": catalog.package_test_source(pkg)}]

    def read_spec(self) -> tuple[str, list[catalog.SpecItem]]:
        path = self.cwd / catalog.SPEC_FILE
        return catalog.parse_spec(path.read_text()) if path.is_file() else ("", [])

    def implement_plan(self) -> list[dict[str, Any]]:
        pkg, items = self.read_spec()
        if not items:
            return [{"kind": "text", "text": f"There is no {catalog.SPEC_FILE} to implement yet."}]
        m = re.search(r"component\s+`?(\w+)`?", self.args.prompt, re.I)
        comps = [m.group(1)] if m else sorted({i.component for i in items})
        careful = "careful" in self.directives
        red = "failing-tests" in self.directives  # tests of every edge case, code still hasty: they fail
        plan: list[dict[str, Any]] = [{"kind": "read", "path": catalog.SPEC_FILE}]
        if catalog.EXPORTING in comps:  # the second human-like oversight: __version__ lost in a rewrite
            plan.append({"kind": "write", "path": f"{pkg}/__init__.py",
                         "content": catalog.package_init(catalog.EXPORTING, careful=careful)})
        elif not (self.cwd / pkg / "__init__.py").is_file():
            plan.append({"kind": "write", "path": f"{pkg}/__init__.py", "content": catalog.package_init()})
        if not (self.cwd / "tests" / "__init__.py").is_file():
            plan.append({"kind": "write", "path": "tests/__init__.py", "content": ""})
        for comp in comps:
            mine = [i for i in items if i.component == comp]
            if not mine:
                continue
            # The one human-like oversight: the last requirement's edge case, first time round.
            reqs = [(i.req, careful or n < len(mine) - 1) for n, i in enumerate(mine)]
            plan.append({"kind": "write", "path": f"{pkg}/{comp}.py", "content": catalog.module_source(reqs)})
            plan.append({"kind": "write", "path": f"tests/test_{comp}.py",
                         "content": catalog.test_source(pkg, comp, mine, with_edges=careful or red)})
        if (self.cwd / ".git").exists():  # in a repository, a look at its history first, as agents do
            plan.insert(1, {"kind": "shell", "command": "git log --oneline -5"})
        if "run the tests" in self.args.prompt.lower():
            plan.append({"kind": "shell", "command": "python3 -m unittest discover -s tests -t ."})
        return plan

    def resolve_plan(self) -> list[dict[str, Any]]:
        """A merge task: keep both sides of every conflict in the files the prompt lists."""
        listed = self.args.prompt.partition("resolve the merge conflict in these files:")[2]
        files = re.findall(r"(?m)^- (\S.*)$", listed.partition("\n\n")[0])
        if not files:
            return [{"kind": "text", "text": "I found no conflicting files in the request."}]
        return [{"kind": "resolve", "path": f} for f in files] + [
            {"kind": "text", "text": f"Kept both sides of the conflicts in {', '.join(files)}."}]

    def fix_plan(self) -> list[dict[str, Any]]:
        pkg, items = self.read_spec()
        wanted = set(re.findall(r"\bR\d+\b", self.args.prompt))
        plan: list[dict[str, Any]] = []
        for test, repair in catalog.REPAIRS.items():  # a failing test the project's tests named
            if re.search(rf"\b{test}\b", self.args.prompt) and pkg:
                path, content = repair(pkg)
                plan.append({"kind": "write", "path": path, "content": content})
        for it in items:
            if it.rid not in wanted:
                continue
            plan.append({"kind": "fix", "path": it.module_path, "old": it.req.hasty, "new": it.req.code})
            test_path = f"tests/test_{it.component}.py"
            edge_expr, exc = it.req.edge.split(" raises ")
            plan.append({"kind": "fix", "path": test_path, "old": '\n\nif __name__ == "__main__":',
                         "new": f"\n    def test_edge_{it.req.name}(self):\n        with self.assertRaises({exc}):\n"
                                f"            {edge_expr}\n\nif __name__ == \"__main__\":"})
        if not plan:
            return [{"kind": "text", "text": "I found nothing to fix in the blockers given."}]
        if (self.cwd / ".git").exists():  # in a repository, a look at its history first, as agents do
            plan.insert(1, {"kind": "shell", "command": "git log --oneline -5"})
        if "run the tests" in self.args.prompt.lower():
            plan.append({"kind": "shell", "command": "python3 -m unittest discover -s tests -t ."})
        return plan

    def check_example(self, pkg: str, item: catalog.SpecItem, example: str) -> Optional[str]:
        """Run one example against the code on disk; None when it holds, else what happened."""
        mod = item.module_path.removesuffix(".py").replace("/", ".")
        if " raises " in example:
            expr, exc = example.split(" raises ")
            code = (f"from {mod} import *\ntry:\n    r = {expr}\nexcept {exc.strip()}:\n    print('OK')\n"
                    f"else:\n    print('returned', repr(r))")
        else:
            code = f"from {mod} import *\nprint('OK' if ({example}) else 'FALSE')"
        try:
            proc = subprocess.run([sys.executable, "-B", "-c", code], cwd=self.cwd, capture_output=True, text=True, timeout=30)
        except subprocess.TimeoutExpired:
            return "timed out"
        lines = proc.stdout.strip().splitlines() or proc.stderr.strip().splitlines()
        out = lines[-1] if lines else ""
        return None if out == "OK" else (out or f"exit {proc.returncode}")

    def def_line(self, item: catalog.SpecItem) -> int:
        path = self.cwd / item.module_path
        if path.is_file():
            for n, line in enumerate(path.read_text().splitlines(), 1):
                if line.startswith(f"def {item.req.name}("):
                    return n
        return 1

    def findings(self, asked: frozenset[str] = frozenset()) -> tuple[list[catalog.SpecItem], list[dict[str, Any]]]:
        """What this reviewer finds, in its own words (each stream format reviews in its own style,
        as reviewers of different vendors do): every format runs the spec's examples; the gemini
        format (or a `thorough` reviewer) also checks that each edge case found broken (or asked
        about) has a test."""
        pkg, items = self.read_spec()
        found = []
        for it in items:
            for ex in it.examples:
                problem = self.check_example(pkg, it, ex)
                if problem:
                    found.append(self.describe(it, ex, problem))
                    break
            thorough = self.em.fmt == "gemini" or "thorough" in self.directives
            if thorough and (it.rid in asked or any(f["id"] == it.rid for f in found)):
                gap = self.untested_edge(it)
                if gap:
                    found.append(gap)
        return items, found

    def describe(self, it: catalog.SpecItem, example: str, problem: str) -> dict[str, Any]:
        """One broken example as this format's reviewer reports it."""
        line = self.def_line(it)
        if self.em.fmt == "codex":  # terse, pointing at the function's body
            return {"id": it.rid, "file": it.module_path, "line": line + 1, "severity": "high",
                    "description": f"{it.rid}: {it.req.name}() misses its edge case — `{example}` fails ({problem})"}
        if self.em.fmt == "gemini":
            exc = example.partition(" raises ")[2]
            what = f"must refuse bad input with {exc}, and it does not" if exc else "gives a wrong result"
            return {"id": it.rid, "file": it.module_path, "line": line, "severity": "high",
                    "description": f"{it.rid} is not met — {it.req.name} {what} ({problem})"}
        return {"id": it.rid, "file": it.module_path, "line": line, "severity": "high",
                "description": f"{it.rid} `{example}` does not hold: {problem}"}

    def untested_edge(self, it: catalog.SpecItem) -> Optional[dict[str, Any]]:
        """A coverage gap: the requirement's edge case appears in no test of its component."""
        path = self.cwd / "tests" / f"test_{it.component}.py"
        expr = it.req.edge.split(" raises ")[0]
        if path.is_file() and expr in path.read_text(errors="replace"):
            return None
        return {"id": it.rid, "file": f"tests/test_{it.component}.py", "line": None, "severity": "medium",
                "description": f"{it.rid}: no test covers the edge case `{it.req.edge}`; add one to "
                               f"tests/test_{it.component}.py"}

    def review_plan(self) -> list[dict[str, Any]]:
        items, found = self.findings()
        plan: list[dict[str, Any]] = [{"kind": "read", "path": catalog.SPEC_FILE}]
        plan += [{"kind": "read", "path": p} for p in sorted({i.module_path for i in items})]
        if self.em.fmt == "gemini" or "thorough" in self.directives:  # it reads the tests too: what they cover
            plan += [{"kind": "read", "path": f"tests/test_{c}.py"} for c in sorted({i.component for i in items})]
        verdict = {
            "verdict": "changes_requested" if found or not items else "approve",
            "summary": (f"Ran {sum(len(i.examples) for i in items)} spec examples against the code; "
                        f"{len(found)} finding(s)." if items else f"No {catalog.SPEC_FILE} found to review against."),
            "blockers": found if items else [{"id": "R0", "file": catalog.SPEC_FILE, "line": 1, "severity": "critical",
                                               "description": "the specification is missing"}],
        }
        plan.append({"kind": "verdict", "verdict": verdict})
        return plan

    def verify_plan(self) -> list[dict[str, Any]]:
        _, found = self.findings(frozenset(re.findall(r"\bR\d+\b", self.args.prompt)))
        failing = {f["id"] for f in found}
        verified, reopened = [], []
        for line in self.args.prompt.splitlines():
            b = re.search(r"\b(B-\d+)\b", line)
            r = re.search(r"\b(R\d+)\b", line)
            if b and r:
                (reopened if r.group(1) in failing else verified).append(b.group(1))
        verdict = {"verdict": "approve" if not reopened else "changes_requested",
                   "summary": f"Re-ran the examples behind {len(verified) + len(reopened)} blocker(s).",
                   "blockers": [], "verified": verified, "reopened": reopened}
        return [{"kind": "verdict", "verdict": verdict}]

    def verdict_text(self, v: dict[str, Any]) -> str:
        """The reply that carries a verdict, in this format's style: a fenced JSON block (claude's),
        terse JSON with other key names (codex's), Markdown prose (gemini's) — all of which orch reads."""
        if self.em.fmt == "codex" and v.get("blockers") is not None and "verified" not in v:
            terse = {"decision": "request changes" if v["verdict"] != "approve" else "approve",
                     "summary": v["summary"],
                     "findings": [{"location": f"{b['file']}:{b['line']}" if b.get("line") else b["file"],
                                   "priority": {"critical": "P0", "high": "P1", "medium": "P2"}.get(b["severity"], "P3"),
                                   "issue": b["description"]} for b in v["blockers"]]}
            return f"Review done.\n\n```json\n{json.dumps(terse, indent=2)}\n```"
        if self.em.fmt == "gemini" and "verified" not in v:
            lines = ["## Review", "", f"**Verdict:** {'APPROVE' if v['verdict'] == 'approve' else 'REQUEST CHANGES'}",
                     "", f"Summary: {v['summary']}", ""]
            if v.get("blockers"):
                lines += ["### Blockers", ""]
                for b in v["blockers"]:
                    where = f"{b['file']}:{b['line']}" if b.get("line") else b["file"]
                    lines.append(f"- [{b['severity']}] `{where}` — {b['description']}")
            return "\n".join(lines) + "\n"
        return f"Review finished: {v['verdict']}.\n\n```json\n{json.dumps(v, indent=2)}\n```"

    # ---- the run
    def run(self) -> int:
        d = self.directives
        self.mem.turns += 1
        self.mem.prompts.append(self.args.prompt[:500])
        self.mem.save()  # like the real CLIs: the conversation is on disk before any work, so a killed run resumes
        if "exit" in d:
            sys.stderr.write(f"sim: exiting with {d['exit']} before any output\n")
            return int(_number(d["exit"], 1))
        if "login" in d:  # what claude prints when its credentials are missing
            sys.stdout.write("Not logged in · Please run /login\n")
            sys.stdout.flush()
            return 1
        if "silent" in d:
            time.sleep(_number(d["silent"], 0.2))
            return 0
        if "garbage" in d:
            for i in range(int(_number(d["garbage"], 5))):
                sys.stdout.write(f"this is not json {i} \x01\x02 {{broken\n")
            sys.stdout.flush()
            sys.stderr.write("sim: printed garbage on purpose\n")
            return 3
        if "ignore-term" in d:  # like a CLI busy flushing: only SIGKILL ends it
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        self.em.start(self.args.prompt)
        if "lines" in d:  # a steady stream, for load tests
            interval = _number(d.get("interval", ""), 0.01)
            for i in range(int(_number(d["lines"], 10))):
                self.em.text(f"line {i} of a steady stream")
                time.sleep(interval)
        if "hang" in d:
            time.sleep(10 ** 6)
        if "lazy" in d:  # a reply that claims the work without doing any of it
            self.pause()
            self.em.finish("Done: the task is complete.")
            return 0
        if "limit" in d:
            self.pause()
            self.mem.unfinished = self.args.prompt
            self.mem.save()
            return self.em.limit(float(d["limit"] or 3600))
        if "fail" in d or "quota" in d or "billing" in d:
            self.pause()
            self.mem.unfinished = self.args.prompt
            self.mem.save()
            if "billing" in d or d.get("fail") == "billing":  # OpenAI's words for an account out of credit
                return self.em.fail(429, "You exceeded your current quota, please check your plan and billing details. "
                                         "(insufficient_quota)")
            status = 429 if "quota" in d or d["fail"] == "quota" else int(d["fail"]) if d["fail"].isdigit() else 500
            msg = "rate limit exceeded: quota exhausted for this key" if status == 429 else "sim injected error"
            return self.em.fail(status, msg)
        if "stall" in d:
            self.em.text("Thinking about it...")
            time.sleep(_number(d["stall"], _number(os.environ.get("ORCH_SIM_STALL", ""), 60)))

        low = self.args.prompt.lower()
        if self.mem.pending and re.search(r"\b(refused|not allowed|without it|skip it)\b", low):
            self.em.text("Understood: I will continue without that action.")
            self.mem.pending = []
        todo: list[dict[str, Any]] = list(self.mem.pending)
        if todo:
            self.em.text(f"Resuming: retrying {todo[0]['kind']} that was refused before.")
        plan, kind = self.plan_for_prompt()
        if kind == "chat" and self.mem.unfinished:
            # "Continue": the request a limit cut short, as a real CLI has it in its conversation.
            asked, self.args.prompt = self.args.prompt, self.mem.unfinished
            plan, kind = self.plan_for_prompt()
            self.args.prompt = asked
            self.em.text("Continuing the request I could not finish before.")
        self.mem.unfinished = ""
        if todo and kind == "chat":
            plan = []
        todo += plan
        verdicts = [a for a in todo if a["kind"] == "verdict"]
        todo = [a for a in todo if a["kind"] != "verdict"]
        if "duration" in d and todo:
            self.pace = _number(d["duration"], 1) / (len(todo) + 1)
        ok = self.run_plan(todo)
        if not ok:
            a = self.mem.pending[0]
            what = a.get("path") or a.get("command") or a["kind"]
            final = f"I could not finish: permission to {a['kind']} {what} was not granted."
        elif verdicts:
            final = self.verdict_text(verdicts[-1]["verdict"])
        elif kind == "spec":
            pkg = catalog.package_name(self.goal())
            tasks = [{"title": f"Implement component {c}",
                      "description": f"Requirements of the {c} section of {catalog.SPEC_FILE}, in {pkg}/{c}.py, "
                                     f"with tests in tests/test_{c}.py."}
                     for c in catalog.plan_components(self.goal())]
            if "race" in d:  # race=COMP[:N]: that task raced by N implementers, the others not at all
                comp, _, n = d["race"].partition(":")
                for t in tasks:
                    t["race"] = int(_number(n, 2)) if t["title"].endswith(f" {comp}") else 0
            final = (f"Wrote {catalog.SPEC_FILE}: {len(tasks)} independent components.\n\n"
                     f"```json\n{json.dumps({'tasks': tasks}, indent=2)}\n```")
        elif kind == "chat" and todo:
            final = "Retried the action that was refused before, and finished the task."
        elif kind == "chat":
            final = f"Done. You asked: {self.args.prompt.strip().splitlines()[0][:200] if self.args.prompt.strip() else '(nothing)'}"
        else:
            final = f"Finished the {kind} task."
        self.pause()
        self.em.finish(final)
        if "linger" in d:
            sys.stdout.flush()
            time.sleep(_number(d["linger"], 30))
        return 0


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="orch-sim", description="orch's simulated coding agent")
    ap.add_argument("-p", "--prompt", required=True)
    ap.add_argument("--role", default="worker")
    ap.add_argument("--format", default="claude", choices=sorted(EMITTERS))
    ap.add_argument("--permission", default="read", choices=["read", "edit", "full"])
    ap.add_argument("--allow", action="append", default=[])
    ap.add_argument("--dangerous", action="store_true")
    ap.add_argument("--session-id")
    ap.add_argument("--resume")
    ap.add_argument("--pace", type=float, default=float(os.environ.get("ORCH_SIM_PACE", "0.05")))
    args = ap.parse_args(argv)

    if args.resume:
        memory = Memory.load(args.resume)
        if memory is None:
            sys.stderr.write(f"sim: no conversation found with session ID: {args.resume}\n")
            return 1
    else:
        memory = Memory(args.session_id or str(uuid.uuid4()))
    emitter = EMITTERS[args.format](memory.session_id, str(Path.cwd()), args.role, args.permission,
                                    prior_turns=memory.model_turns)
    agent = SimAgent(args, emitter, memory)
    try:
        code = agent.run()
    finally:
        memory.model_turns += emitter.turns
        memory.save()
    return code

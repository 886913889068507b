"""The session as a state machine under random use: invariants I1–I5 of issue 22, on real processes.

Hypothesis drives real `orch` commands and real sim agents through random sequences of what
users, agents and machines do — start (with a sim fault in the goal, in a git repository or a
plain folder, with a round limit), step, wait, follow the advice, launch by hand, abort one or
all, retry, resume, SIGKILL of an orch command mid-step, of a run's supervisor or of its CLI,
damaged files — and checks after every step:

  I1 home      following the first command `orch check` advises, mechanically, reaches completion
               or one explicit decision for a person (allow/deny, a budget, --max-rounds N, a
               retry after a stop, a damaged file to restore) within a bound; no advised command
               fails; no advice loops back to the same state (checked at the end of every run,
               and each advised command is run as one of the steps)
  I2           no command prints a traceback or "internal error"
  I3 quiet     `orch wait` with nothing live returns no sooner than the earliest due time (a park,
               a back-off) unless something happened, and the autopilot's (`orch resume`) inotify
               instances stay constant (ORCH_MODEL_QUIET_WAIT=0 turns the check off, and the
               walk then sleeps to the due time itself)
  I4 lost      a run that ended well is never relabelled, a done task is never run again, no
               implement/fix task is done without its change (or the reviewer's word: no_change),
               no event is appended twice
  I5 slots     no agent that is retired (done), failed or aborted is given work again (its place
               in the team is free); an ad-hoc task runs again only on its own agent

CI runs a few derandomized examples (a few minutes); ORCH_MODEL_STEPS and ORCH_MODEL_EXAMPLES
make longer local runs. Sequences that once failed are kept below as plain regression tests.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

import pytest
from hypothesis import HealthCheck, Phase, Verbosity, seed, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from orchtest import kill_agents_left, orch_argv, orch_env, run_orch

STEPS = int(os.environ.get("ORCH_MODEL_STEPS", "8"))
EXAMPLES = int(os.environ.get("ORCH_MODEL_EXAMPLES", "4"))
QUIET_WAIT = os.environ.get("ORCH_MODEL_QUIET_WAIT", "1") == "1"
VERBOSE = bool(os.environ.get("ORCH_MODEL_VERBOSE"))  # I3: on once `orch wait` sleeps through parks
WALK = 60  # advised commands followed at most, from the last state to home
SIM_TEAM = ["--architect", "sim", "--implementer", "sim", "--reviewer", "sim"]
FAULTS = [
    "",
    "[sim@implementer: exit=2 runs=1]",  # a crash, retried after its back-off
    "[sim@implementer: exit=2 runs=3]",  # fails its attempts: the session stops
    "[sim@implementer: limit=2 runs=1]",  # a usage limit: parked, resumed in the same CLI session
    "[sim@reviewer: login runs=1]",  # not logged in: stops at once, `orch retry` continues
    "[sim@implementer: stall=30 runs=1]",  # silent: nudged, then a reply that changed nothing
    "[sim@implementer: garbage=3 runs=1]",  # output that is not the CLI's stream
    "[sim@implementer: lazy runs=1]",  # a reply that claims the work without doing it
]
POLICY = "[limits]\nlimit_grace_seconds = 0.5\n"
LIVE = ("starting", "running", "silent")
DECISION_COMMANDS = ("allow", "deny", "budget")
ALLOWED_EXIT = {"step": (0,), "wait": (0,), "retry": (0,), "report": (0, 1), "resume": (0, 1, 3, 4),
                "check": (0, 1), "abort": (0,)}


def _inotify_instances(pid: int) -> int:
    """How many inotify instances a process holds (its fds that are inotify)."""
    n = 0
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                n += os.readlink(f"/proc/{pid}/fd/{fd}") == "anon_inode:inotify"
            except OSError:
                continue
    except OSError:
        return 0
    return n


def _ts(iso: str) -> datetime:
    return datetime.fromisoformat(iso.replace("Z", "+00:00"))


class SessionModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.base = Path(tempfile.mkdtemp(prefix="orch-model-"))
        self.ws = self.base / "ws"
        self.ws.mkdir()
        self.env = {"ORCH_HOME": str(self.ws / ".orch"), "ORCH_SIM_HOME": str(self.base / "sim"),
                    "ORCH_SIM_PACE": "0.02", "ORCH_RETRY_BACKOFF": "0.3", "ORCH_STALL_AFTER": "2",
                    "ORCH_SILENT_AFTER": "1"}
        self.sid: Optional[str] = None
        self.checked = 0  # commands already checked for I2
        self.ran: list[tuple[tuple[str, ...], int, str, str]] = []
        self.good_runs: set[tuple[str, str, int]] = set()
        self.damaged: dict[Path, bytes] = {}  # meta.json made a folder, and its content (a person restores it)

    # ------------------------------------------------------------ plumbing
    def say(self, what: str) -> None:
        if VERBOSE:
            print(f"  ({what})", flush=True)

    def orch(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
        started = time.monotonic()
        proc = run_orch(*args, cwd=self.ws, env=self.env, timeout=timeout)
        self.ran.append((args, proc.returncode, proc.stdout, proc.stderr))
        if VERBOSE:
            print(f"  orch {' '.join(args)[:100]} → {proc.returncode} in {time.monotonic() - started:.1f} s",
                  flush=True)
        return proc

    def session_dir(self) -> Path:
        return self.ws / ".orch" / "sessions" / self.sid

    def session(self) -> dict[str, Any]:
        return json.loads((self.session_dir() / "session.json").read_text())

    def agents(self) -> list[dict[str, Any]]:
        out = []
        for meta in sorted((self.session_dir() / "agents").glob("*/meta.json")):
            try:
                out.append(json.loads(meta.read_text()))
            except (OSError, ValueError):
                continue  # a damaged one (a folder): orch skips it too
        return out

    def events(self) -> list[dict[str, Any]]:
        out = []
        for line in (self.session_dir() / "events.jsonl").read_bytes().splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict) and isinstance(event.get("data", {}), dict) and "kind" in event:
                event.setdefault("data", {})
                out.append(event)
        return out

    def live_runs(self) -> list[tuple[str, dict[str, Any]]]:
        out = []
        for record in (self.session_dir() / "agents").glob("*/run-*.json"):
            try:
                data = json.loads(record.read_text())
            except (OSError, ValueError):
                continue
            if "ended_at" not in data and isinstance(data.get("pid"), int):
                out.append((record.parent.name, data))
        return out

    def fingerprint(self) -> tuple:
        s = self.session()
        return (s["state"], s["round"], tuple((t["id"], t["state"], t.get("attempts", 0)) for t in s["tasks"]),
                tuple((a["id"], a["state"], len(a["runs"])) for a in self.agents()))

    # ------------------------------------------------------------ the steps
    @initialize(fault=st.sampled_from(FAULTS), git=st.booleans(), rounds=st.integers(1, 3))
    def start(self, fault: str, git: bool, rounds: int) -> None:
        if git:
            subprocess.run(["git", "init", "-q", str(self.ws)], check=True)
        (self.ws / ".orch").mkdir()
        (self.ws / ".orch" / "policy.toml").write_text(POLICY)
        proc = self.orch("start", f"Build a small text utilities library {fault}".strip(), *SIM_TEAM,
                         "--max-rounds", str(rounds))
        assert proc.returncode == 0, proc.stderr
        self.sid = proc.stdout.split()[-1]

    @rule()
    def step(self) -> None:
        proc = self.orch("step")
        assert proc.returncode == 0, proc.stdout + proc.stderr

    @rule()
    def wait(self) -> None:
        proc = self.orch("wait", "--timeout", "3")
        assert proc.returncode == 0, proc.stderr

    @rule()
    def follow_advice(self) -> None:
        """I1, one step at a time: what orch advises from here works when run as printed."""
        self.follow(self.advice())

    @rule(fault=st.sampled_from(["", "[sim: exit=3 runs=1]", "[sim: stall=30 runs=1]"]))
    def launch(self, fault: str) -> None:
        proc = self.orch("launch", "--cli", "sim", "--role", "worker", "--prompt", f"say hello {fault}".strip())
        if proc.returncode != 0:  # only a stopped or paused session refuses, naming what continues it
            assert self.session()["state"] in ("stopped", "paused") and "continue it first" in proc.stderr, \
                proc.stderr
        new = re.search(r"launching into a new session (\S+)", proc.stderr)
        if new:  # the session was complete: the launch opened the folder's next one, which the model follows
            assert self.session()["state"] == "complete", proc.stderr
            self.sid = new.group(1)

    @rule(data=st.data())
    def abort_one(self, data: st.DataObject) -> None:
        agents = [a["id"] for a in self.agents()]
        if agents:
            self.abort(data.draw(st.sampled_from(agents)))

    def abort(self, agent: str) -> None:
        proc = self.orch("abort", agent, "--grace", "1")
        assert proc.returncode == 0, proc.stderr

    @rule()
    def abort_all(self) -> None:
        proc = self.orch("abort", "--all", "--grace", "1")
        assert proc.returncode == 0, proc.stderr

    @rule(data=st.data())
    def retry_failed(self, data: st.DataObject) -> None:
        failed = [t["id"] for t in self.session()["tasks"] if t["state"] == "failed"]
        if failed and self.session()["state"] not in ("complete", "aborted"):
            self.retry(data.draw(st.sampled_from(failed)))

    def retry_failed_any(self) -> None:
        failed = [t["id"] for t in self.session()["tasks"] if t["state"] == "failed"]
        if failed and self.session()["state"] not in ("complete", "aborted"):
            self.retry(failed[0])

    def retry(self, task: str) -> None:
        proc = self.orch("retry", task)
        assert proc.returncode == 0, proc.stdout + proc.stderr

    @rule()
    def resume(self) -> None:
        proc = self.watched_resume() if QUIET_WAIT else self.orch("resume", self.sid, "--time-limit", "15")
        if proc.returncode == 2:  # refused: finished, or at its round limit (naming --max-rounds)
            assert "nothing to resume" in proc.stderr or "--max-rounds" in proc.stderr, proc.stderr
        else:
            assert proc.returncode in ALLOWED_EXIT["resume"], proc.stdout + proc.stderr

    def watched_resume(self) -> subprocess.CompletedProcess:
        """I3 for the autopilot: its inotify instances stay constant however long it runs (sampled
        from /proc while it works), and while it waits out a park it prints nothing new."""
        proc = subprocess.Popen(orch_argv("resume", self.sid, "--time-limit", "15"), cwd=self.ws,
                                env=orch_env(self.env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        counts = []
        while proc.poll() is None:
            counts.append(_inotify_instances(proc.pid))
            time.sleep(0.5)  # sampling the process as it runs: not a wait for a state
        out, err = proc.communicate(timeout=60)
        self.ran.append((("resume", self.sid), proc.returncode, out, err))
        seen = [c for c in counts if c]
        assert not seen or max(seen) == seen[0], f"orch resume's inotify instances grew: {counts}"
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)

    @rule(delay=st.floats(0.05, 1.5))
    def kill_a_step(self, delay: float) -> None:
        """SIGKILL `orch step` at a random moment (the delay is the drawn moment, not a wait for a state)."""
        self.say(f"SIGKILL orch step after {delay:.2f} s")
        proc = subprocess.Popen(orch_argv("step"), cwd=self.ws, env=orch_env(self.env), stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        _, err = proc.communicate(timeout=60)
        self.ran.append((("step", "(killed)"), proc.returncode, "", err.decode(errors="replace")))

    @rule(data=st.data(), what=st.sampled_from(["supervisor_pid", "pid"]))
    def kill_a_process(self, data: st.DataObject, what: str) -> None:
        """SIGKILL a live run's supervisor, or its CLI's whole process group."""
        runs = self.live_runs()
        if not runs:
            return
        agent, record = data.draw(st.sampled_from(runs))
        self.say(f"SIGKILL {agent}'s {'CLI' if what == 'pid' else 'supervisor'}")
        try:
            if what == "pid":
                os.killpg(record["pid"], signal.SIGKILL)
            elif isinstance(record.get("supervisor_pid"), int):
                os.kill(record["supervisor_pid"], signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    @rule()
    def damage_the_event_log(self) -> None:
        self.say("garbage lines appended to events.jsonl")
        with open(self.session_dir() / "events.jsonl", "ab") as f:
            f.write(b'{"kind": "nonsense", "ts": 5}\n[1, 2]\n\xff\xfe\n')

    @rule(data=st.data())
    def damage_a_meta(self, data: st.DataObject) -> None:
        metas = [p for p in (self.session_dir() / "agents").glob("*/meta.json") if p.is_file()]
        if metas and not self.damaged:
            self.damage(data.draw(st.sampled_from(sorted(metas))).parent.name)

    def damage(self, agent: str) -> None:
        """The agent's meta.json becomes a folder (its content kept, for a person to restore)."""
        self.say(f"{agent}'s meta.json made a folder")
        meta = self.session_dir() / "agents" / agent / "meta.json"
        content = meta.read_bytes()
        meta.unlink()
        meta.mkdir()
        self.damaged[meta] = content

    @precondition(lambda self: bool(self.damaged))
    @rule()
    def restore_the_meta(self) -> None:
        self.restore()

    def restore(self) -> None:
        self.say("the damaged meta.json restored")
        for meta, content in self.damaged.items():
            shutil.rmtree(meta)
            meta.write_bytes(content)
        self.damaged = {}

    # ------------------------------------------------------------ I1: follow the advice
    def advice(self) -> dict[str, Any]:
        proc = self.orch("check", "--json")
        assert proc.returncode in (0, 1), proc.stderr
        return json.loads(proc.stdout)

    def follow(self, r: dict[str, Any]) -> Optional[subprocess.CompletedProcess]:
        """Run the first advised command as printed; None when it is a person's decision."""
        cmd = r["next_command"].partition("#")[0].split()
        if not cmd:
            assert r["session_state"] in ("complete", "aborted"), r
            return None
        if cmd[0] != "orch":
            assert "restore or move aside" in r["next_command"], r["next_command"]
            return None
        if cmd[1] in DECISION_COMMANDS:
            return None
        if cmd[1] == "wait":
            self.quiet_wait(r, cmd)
            return None
        proc = self.orch(*cmd[1:], timeout=300)
        assert proc.returncode in ALLOWED_EXIT.get(cmd[1], (0,)), (cmd, proc.stdout, proc.stderr)
        return proc

    def quiet_wait(self, r: dict[str, Any], cmd: list[str]) -> None:
        due = self.due_at(r)
        if due is not None and not QUIET_WAIT:
            time.sleep(max((due - datetime.now(timezone.utc)).total_seconds(), 0))  # what wait will do itself
        started = time.monotonic()
        proc = self.orch(*cmd[1:], "--json", timeout=700)
        assert proc.returncode == 0, proc.stderr
        digest = json.loads(proc.stdout)
        if QUIET_WAIT and due is not None:  # I3: not back before the due time unless something happened
            early = (due - datetime.now(timezone.utc)).total_seconds()
            assert early <= 0.5 or any(not h.startswith("nothing is running") for h in digest["happened"]), \
                (f"orch wait returned {time.monotonic() - started:.1f} s in, {early:.1f} s before anything was due",
                 digest["happened"])

    def due_at(self, r: dict[str, Any]) -> Optional[datetime]:
        """When something is due while nothing runs: a parked agent's resume, a back-off's end."""
        if r["live_agents"]:
            return None
        times = [_ts(r["resume_at"])] if r.get("resume_at") else []
        times += [_ts(t["retry_at"]) for t in self.session()["tasks"] if t["state"] == "queued" and t.get("retry_at")]
        return min(times) if times else None

    def walk_home(self) -> None:
        """I1: from here, the advice leads to completion or a person's decision, never round in circles."""
        seen_quiet: set = set()
        decided = False
        for _ in range(WALK):
            r = self.advice()
            state = r["session_state"]
            if state == "complete":
                return
            if r["ok"]:
                report = self.orch("report")
                assert report.returncode == 0 and self.session()["state"] == "complete", report.stdout
                return
            advice = r["next_command"]
            command = advice.partition("#")[0].strip()
            if not command.startswith("orch "):
                assert self.damaged and "restore or move aside" in advice, advice
                self.restore()  # a person restores the damaged file; the walk goes on from there
                continue
            if command.split()[1] in DECISION_COMMANDS:
                return  # allow/deny/budget: a person's decision
            key = (self.fingerprint(), re.sub(r"\d\d:\d\d:\d\d UTC|\d+ s\b", "T", advice))
            if state == "stopped" or (command.startswith("orch retry") and state == "active"):
                if decided:
                    return  # a person's decision, the second on this walk: theirs to take (the first one worked)
                decided = True  # taken once, as advised, to see that it works and leads on
            elif not r["live_agents"] and not self.due_at(r):
                assert key not in seen_quiet, f"the advice loops: {advice} from {key[0]}"
                seen_quiet.add(key)
            self.follow(r)
        raise AssertionError(f"not home after {WALK} advised commands; last advice: {advice}")

    # ------------------------------------------------------------ the invariants after every step
    @invariant()
    def no_internal_error(self) -> None:  # I2
        for args, code, out, err in self.ran[self.checked:]:
            assert "Traceback" not in out + err and "internal error" not in out + err, (args, code, out, err)
        self.checked = len(self.ran)

    @invariant()
    def nothing_lost(self) -> None:  # I4
        if self.sid is None:
            return
        events = self.events()
        tokens = [e["data"].get(k) for e in events for k in ("batch", "ingest") if e["data"].get(k)]
        assert len(tokens) == len(set(tokens)), "an event batch was appended twice"
        for kind in ("agent.exited", "agent.launched", "agent.resumed"):
            keys = [(e.get("agent"), e["data"].get("run")) for e in events if e["kind"] == kind]
            assert len(keys) == len(set(keys)), f"{kind} twice for one run"
        session, agents = self.session(), self.agents()
        for a in agents:
            for run in a["runs"]:
                key = (self.sid, a["id"], run["n"])
                good = run.get("exit_code") == 0 and run.get("outcome") == "success" and not run.get("failure")
                if key in self.good_runs:
                    assert good, f"{key} ended well, and is now {run.get('failure')} (exit {run.get('exit_code')})"
                elif good and run.get("ended_at"):
                    self.good_runs.add(key)
        runs = [(a["id"], run) for a in agents for run in a["runs"]]
        for t in session["tasks"]:
            if t["state"] != "done":
                continue
            again = [(agent, r["n"]) for agent, r in runs if r.get("task") == t["id"] and t.get("ended_at")
                     and _ts(r["started_at"]) > _ts(t["ended_at"])]
            assert not again, f"{t['id']} was done, then run again: {again}"
            if t["kind"] in ("implement", "fix"):
                own = [r for _, r in runs if r.get("task") == t["id"]]
                changed = t.get("files_changed") or any(r.get("files_changed") or r.get("tool_calls") for r in own)
                assert changed or t.get("no_change"), f"{t['id']} is done without a change"

    @invariant()
    def slots_are_freed(self) -> None:  # I5
        if self.sid is None:
            return
        kinds = {t["id"]: t["kind"] for t in self.session()["tasks"]}
        state: dict[str, str] = {}
        session_state = "active"
        for e in self.events():
            if e["kind"] == "session.state" and e["data"].get("state"):
                session_state = e["data"]["state"]
            if e["kind"] == "task.assigned":  # nothing starts in a session that is not active
                assert session_state == "active", f"{e.get('task')} given to {e.get('agent')} in a {session_state} session"
            if e["kind"] == "agent.state" and e.get("agent"):
                state[e["agent"]] = e["data"].get("to", "")
            elif e["kind"] == "task.assigned" and e.get("agent") in state:
                was, task = state[e["agent"]], e.get("task")
                allowed = ("idle", "failed", "done", "aborted") if kinds.get(task) == "adhoc" else ("idle",)
                assert was in allowed, f"{e['agent']} was {was} and was given {task}: {e.get('reason')}"

    def teardown(self) -> None:
        try:
            if self.sid is not None:
                self.walk_home()
                self.no_internal_error()
                self.nothing_lost()
        finally:
            kill_agents_left(self.ws / ".orch")
            shutil.rmtree(self.base, ignore_errors=True)


def _replay(model: SessionModel, *steps) -> None:
    """Run a recorded sequence of steps, checking every invariant after each, then walk home."""
    try:
        for step, *args in steps:
            getattr(model, step)(*args)
            model.no_internal_error()
            model.nothing_lost()
            model.slots_are_freed()
    finally:
        model.teardown()


@pytest.mark.timeout(600)
def test_regression_a_stop_assigns_nothing_and_an_abort_is_no_attempt():
    """Found by the model (the first CI sequences): in a git session whose implementer crashes,
    a step that stopped the session still gave a queued task to a new agent (left running in a
    stopped session), and an aborted run counted as one of its task's two attempts."""
    m = SessionModel()
    _replay(m, ("start", "[sim@implementer: exit=2 runs=1]", True, 1), ("resume",), ("abort_all",), ("resume",),
            ("launch", ""), ("abort_all",), ("retry_failed_any",), ("abort_all",), ("abort_all",),
            ("damage", "architect-1"))


@pytest.mark.timeout(600)
def test_regression_a_launch_after_completion_follows_the_new_session():
    """Found by the model (seed 7): after a login stop was retried and the session completed, a
    launch opened the folder's next session; the model follows it, and the new session's runs are
    its own (the first session's `worker-1` is another agent)."""
    m = SessionModel()
    _replay(m, ("start", "[sim@reviewer: login runs=1]", True, 3), ("launch", ""), ("resume",), ("resume",),
            ("resume",), ("resume",), ("launch", "[sim: stall=30 runs=1]"))


SEED = os.environ.get("ORCH_MODEL_SEED")  # local runs: other sequences than CI's fixed ones
SessionModel.TestCase.settings = settings(
    max_examples=EXAMPLES, stateful_step_count=STEPS, deadline=None, derandomize=SEED is None, database=None,
    phases=[Phase.explicit, Phase.generate] + ([Phase.shrink] if os.environ.get("ORCH_MODEL_SHRINK") else []),
    suppress_health_check=list(HealthCheck), report_multiple_bugs=False,
    verbosity=Verbosity.verbose if VERBOSE else Verbosity.normal)

TestSessionModel = SessionModel.TestCase
if SEED is not None:
    TestSessionModel.runTest = seed(int(SEED))(TestSessionModel.runTest)
# The whole run is one test: its time grows with the examples and steps (about 1 s per command).
TestSessionModel.pytestmark = [pytest.mark.timeout(120 + 90 * EXAMPLES * max(STEPS, 4) // 4)]

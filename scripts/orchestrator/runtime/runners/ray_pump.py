"""The local half of a Ray-placed run: a small detached process per run (the run's supervisor).

    python -m orchestrator.runtime.runners.ray_pump AGENT_DIR N --address A --cli C --cwd DIR
        [--forward NAME,NAME] [--reattach] -- ARGV...

It records itself in run-N.json (pid, start time: the liveness the ingest already checks),
ships the agent's workspace as a git bundle, creates the run's named, detached actor where
the resources `orch_agent` and `cli_<C>` are (preferring the node of the agent's previous
run, where its CLI session lives), and copies the actor's output into stdout.jsonl and
stderr.log. The offset it asks from is the number of bytes already appended locally since
the run began, so whichever pump asks next — this one, or one restarted by `--reattach`
after this one died — neither loses nor repeats a byte. An exclusive lock keeps two pumps
from copying the same run. When the CLI exits it takes back the run's commits, records
the exit, and removes the actor. An actor that died with its node ends the run as lost.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import signal
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

from ...core.errors import OrchError
from ..procs import proc_start_time
from . import git_ship
from .ray_names import NAMESPACE, actor_name, node_resources, ref_key

POLL_WAIT = 0.5  # a poll returns at once when there is output; else after this long
STOP_GRACE = 5.0  # TERM → KILL on the node when orch ends the run


def _stamp() -> str:
    return datetime.now(timezone.utc).isoformat()


class Pump:
    def __init__(self, args: argparse.Namespace):
        self.dir = Path(args.agent_dir)
        self.n = args.n
        self.args = args
        self.path = self.dir / f"run-{self.n}.json"
        self.stop_requested = False
        self.stop_sent = False
        old = self._read_record() if args.reattach else {}
        me = os.getpid()
        self.record = {
            **old, "n": self.n, "runner": "ray", "address": args.address, "actor": actor_name(self.dir, self.n),
            "supervisor_pid": me, "supervisor_start": proc_start_time(me), "pid": me, "pgid": me,
            "proc_start": proc_start_time(me), "started_at": old.get("started_at") or _stamp(),
            "stdout_base": old.get("stdout_base", _size(self.dir / "stdout.jsonl")),
            "stderr_base": old.get("stderr_base", _size(self.dir / "stderr.log")),
            "attaches": old.get("attaches", 0) + (1 if args.reattach else 0), "cwd": str(args.cwd),
        }

    # ---- the record
    def _read_record(self) -> dict:
        try:
            record = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return record if isinstance(record, dict) else {}

    def write(self, **fields) -> None:
        self.record.update(fields)
        tmp = self.dir / f".run-{self.n}.json.pump"
        tmp.write_text(json.dumps(self.record) + "\n")
        os.replace(tmp, self.path)

    def end_lost(self, reason: str) -> None:
        """The run's exit can never be known: record it lost — unless its exit is on record already
        (the run finished and its commits came home): a finished run is never relabelled lost."""
        if "exit_code" in self.record:
            return
        self.write(lost=reason[:300], ended_at=_stamp())

    # ---- the run
    def run(self) -> int:
        self.write()
        signal.signal(signal.SIGTERM, self._on_term)
        import ray

        ray.init(address=self.args.address, namespace=NAMESPACE, log_to_driver=False, logging_level="ERROR")
        signal.signal(signal.SIGTERM, self._on_term)  # ray.init installed its own (exit at once): ours stops the run
        try:
            actor = self._attach(ray) if self.args.reattach else self._place(ray)
            if actor is None:
                return 0
            return self._copy(ray, actor)
        except (ray.exceptions.ActorDiedError, ray.exceptions.ActorUnschedulableError) as e:
            self.end_lost(f"the Ray node running it died or its actor was killed ({_first_line(e)})")
            return 0

    def _place(self, ray):
        ws = git_ship.workspace(Path(self.args.cwd), git_ship.orch_tree(self.dir, Path(self.args.cwd)))
        key = ref_key(self.dir, self.n)
        bundle = self.dir / f".run-{self.n}.out.bundle"
        base = git_ship.ship(ws, key, bundle, f"orch: the working tree as {self.dir.name} run {self.n} found it")
        data = bundle.read_bytes()
        bundle.unlink()
        self.write(base=base)
        from .ray_actor import AgentRun

        options = dict(name=self.record["actor"], namespace=NAMESPACE, lifetime="detached", get_if_exists=True,
                       num_cpus=0, max_restarts=0, max_concurrency=4,
                       resources=node_resources(self.args.cli))
        previous = self._previous_node()
        if previous:
            # A resumed CLI session exists only on the node of the previous run: there or nowhere.
            # A fresh run merely prefers that node (its CLI is known to be there).
            if self.args.resumes and not any(n["NodeID"] == previous and n["Alive"] for n in ray.nodes()):
                self.end_lost(f"the Ray node that holds its CLI session ({previous[:12]}) is gone")
                return None
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(previous, soft=not self.args.resumes)
        actor = ray.remote(AgentRun).options(**options).remote()
        env = {k: os.environ[k] for k in self.args.forward.split(",") if k and k in os.environ}
        started = actor.start.remote(self.args.argv, env, data, f"refs/orch/ship/{key}", ws.relpath)
        while True:  # placement waits for a node with the resources; orch may end the run meanwhile
            done, _ = ray.wait([started], timeout=0.5)
            if done:
                break
            if self.stop_requested:
                ray.kill(actor)
                self.write(exit_code=143, signal=15, ended_at=_stamp(), note="ended before it was placed")
                return None
        where = ray.get(started)
        self.write(node=where["node"], host=where["host"], remote_pid=where["pid"])
        return actor

    def _attach(self, ray):
        if self._stop_was_asked():
            self.stop_requested = True  # orch asked its dead predecessor to stop the run
        try:
            return ray.get_actor(self.record["actor"], namespace=NAMESPACE)
        except ValueError:
            self.end_lost("its Ray actor is gone (its node died while no orch process was watching)")
            return None

    def _stop_was_asked(self) -> bool:
        try:
            runs = json.loads((self.dir / "meta.json").read_text()).get("runs", [])
        except (OSError, ValueError, AttributeError):
            return False
        return any(r.get("n") == self.n and r.get("end_request") for r in runs)

    def _previous_node(self) -> Optional[str]:
        if self.n <= 1:
            return None
        try:
            return json.loads((self.dir / f"run-{self.n - 1}.json").read_text()).get("node")
        except (OSError, ValueError, AttributeError):
            return None

    def _copy(self, ray, actor) -> int:
        out_path, err_path = self.dir / "stdout.jsonl", self.dir / "stderr.log"
        while True:
            if self.stop_requested and not self.stop_sent:
                actor.stop.remote(STOP_GRACE)  # the CLI's exit then arrives as usual
                self.stop_sent = True
            try:
                got = ray.get(actor.poll.remote(_size(out_path) - self.record["stdout_base"],
                                                _size(err_path) - self.record["stderr_base"], POLL_WAIT))
            except ray.exceptions.ActorUnavailableError:
                time.sleep(0.5)  # unreachable for now; it either comes back or is declared dead
                continue
            _append(out_path, got["out"])
            _append(err_path, got["err"])
            if got["ended"]:
                break
        self._take_back(ray, actor)
        # The node's size, lines and hash of each whole stream: anyone can check the copy here against them.
        self.write(exit_code=got["exit_code"], signal=got["signal"], ended_at=_stamp(), streams=got["streams"])
        try:  # the run is over and collected: its node may go now, that changes nothing on record
            ray.get(actor.finish.remote())
            ray.kill(actor)
        except Exception as e:
            self.write(note=f"its actor was not removed cleanly: {type(e).__name__}: {_first_line(e)}")
        return 0

    def _take_back(self, ray, actor) -> None:
        data = ray.get(actor.result.remote(self.dir.name))
        if data is None:
            self.write(git="no changes")
            return
        bundle = self.dir / f"run-{self.n}.bundle"
        bundle.write_bytes(data)
        try:
            cwd = Path(self.args.cwd)
            said = git_ship.take_back(git_ship.workspace(cwd, git_ship.orch_tree(self.dir, cwd)),
                                      ref_key(self.dir, self.n), bundle, self.record["base"])
        except (OrchError, OSError) as e:
            said = f"could not take the run's commits back: {getattr(e, 'message', e)}; the bundle is kept in {bundle}"
        else:
            bundle.unlink()
        self.write(git=said)

    def _on_term(self, signum, frame) -> None:
        self.stop_requested = True


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _append(path: Path, data: bytes) -> None:
    if not data:
        return
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return (text[0] if text else type(e).__name__)[:200]


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="ray_pump")
    p.add_argument("agent_dir")
    p.add_argument("n", type=int)
    p.add_argument("--address", default="auto")
    p.add_argument("--cli", default="")
    p.add_argument("--cwd", default=".")
    p.add_argument("--forward", default="")
    p.add_argument("--reattach", action="store_true")
    p.add_argument("--resumes", action="store_true")  # continues the CLI session of the previous run
    argv = sys.argv[1:] if argv is None else argv
    # The CLI's argv (it holds the prompt) is split off first: argparse never sees it, never echoes it.
    cut = argv.index("--") if "--" in argv else len(argv)
    args = p.parse_args(argv[:cut])
    args.argv = argv[cut + 1:]
    try:
        os.setsid()  # a group of its own, as the record says (pgid = pid): orch stops it by its group
    except PermissionError:
        pass  # already a session leader
    lock = open(Path(args.agent_dir) / f".run-{args.n}.pump.lock", "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return 0  # another pump already copies this run
    pump = Pump(args)
    try:
        return pump.run()
    except Exception as e:  # the run's end must be on record, whatever went wrong here
        pump.end_lost(f"its Ray supervisor failed: {type(e).__name__}: {_first_line(e)}")
        raise


if __name__ == "__main__":
    sys.exit(main())

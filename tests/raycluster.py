"""A real local Ray cluster for tests: a head and worker nodes, each its own `ray start --block`.

Everything runs inside a loopback-only network namespace (Ray's servers listen on every
interface of their namespace, and that one has only 127.0.0.1), with usage stats off and a
temp dir of its own. `close()` stops every node and then everything left in the namespace.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

from realcli.netns import Namespace

RAY = str(Path(sys.executable).with_name("ray"))
HEAD_PORT = 6390


def _children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rfind(")") + 2:].split()[1]) == pid:
                out.append(int(entry))
    return out


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


class RayCluster:
    def __init__(self, ns: Optional[Namespace] = None, env: Optional[dict[str, str]] = None):
        self.ns = ns or Namespace()
        self.own_ns = ns is None
        self.before = set(self.ns.processes())  # a shared namespace's own processes (e.g. a model stub) stay
        self.tmp = Path(tempfile.mkdtemp(prefix="orch-ray-", dir="/tmp"))  # Unix socket paths must be short
        self.env = {**os.environ, **(env or {}), "RAY_USAGE_STATS_ENABLED": "0"}
        self.nodes: dict[str, subprocess.Popen] = {}
        self.address = f"127.0.0.1:{HEAD_PORT}"
        try:
            self._start("head", ["--head", "--port", str(HEAD_PORT), "--include-dashboard=false", "--temp-dir", str(self.tmp / "t"),
                                 "--num-cpus", "1",
                                 # a dead node is noticed in a few seconds, not half a minute
                                 "--system-config", json.dumps({"health_check_period_ms": 500,
                                                                "health_check_failure_threshold": 4})],
                        {})
            self.wait_nodes(1)
        except BaseException:
            self.close()
            raise

    def _start(self, name: str, args: list[str], resources: dict, env: Optional[dict[str, str]] = None) -> None:
        log = open(self.tmp / f"{name}.log", "wb")
        scratch = self.tmp / name  # the node's TMPDIR: its runs' checkouts go there and leave with close()
        scratch.mkdir()
        argv = [RAY, "start", "--block", "--node-ip-address=127.0.0.1", "--disable-usage-stats",
                "--object-store-memory", str(80 * 1024 * 1024), "--resources", json.dumps(resources), *args]
        self.nodes[name] = subprocess.Popen(self.ns.wrap(argv), env={**self.env, **(env or {}), "TMPDIR": str(scratch)},
                                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            start_new_session=True)
        log.close()

    def add_node(self, name: str, resources: dict, env: Optional[dict[str, str]] = None) -> None:
        """Start a worker node with these resources (and this environment: its own 'logins')."""
        before = self.alive_nodes()
        self._start(name, ["--address", self.address, "--num-cpus", "1"], resources, env)
        self.wait_nodes(before + 1)

    def alive_nodes(self) -> int:
        return len(self.node_resources())

    def node_resources(self) -> dict[str, dict]:
        """{node id: its resources} of the nodes the head knows alive (asked by a short-lived driver)."""
        proc = subprocess.run(self.ns.wrap([sys.executable, "-c", _NODES, self.address]), env=self.env,
                              capture_output=True, text=True, timeout=120)
        try:
            return json.loads(proc.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            return {}

    def wait_nodes(self, n: int, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.alive_nodes() >= n:
                return
            time.sleep(0.5)
        raise AssertionError(f"the Ray cluster did not reach {n} nodes: {self.log_tail()}")

    def raylet_of(self, name: str) -> Optional[int]:
        """The raylet process of a node (a child of its `ray start --block`)."""
        return next((p for p in _children(self.nodes[name].pid) if _comm(p) == "raylet"), None)

    def kill_raylet(self, name: str) -> int:
        pid = self.raylet_of(name)
        assert pid, f"no raylet for node {name}"
        os.kill(pid, signal.SIGKILL)
        return pid

    def log_tail(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-1500:]}" for p in self.tmp.glob("*.log"))

    def close(self) -> None:
        for proc in reversed(list(self.nodes.values())):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)  # `ray start --block` stops its node's processes
        for proc in self.nodes.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if self.own_ns:
            self.ns.close()  # whatever is still inside (workers, pumps, CLIs)
        else:
            for pid in set(self.ns.processes()) - self.before:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        shutil.rmtree(self.tmp, ignore_errors=True)


_NODES = """
import json, sys, ray
ray.init(address=sys.argv[1], log_to_driver=False, logging_level="ERROR")
print(json.dumps({n["NodeID"]: n["Resources"] for n in ray.nodes() if n["Alive"]}))
""".strip()

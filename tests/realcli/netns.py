"""Confinement for the real-CLI tests: a loopback-only network namespace and a scratch home.

Nothing started here can reach beyond 127.0.0.1. A `Namespace` is a fresh network
namespace holding only `lo` (brought up), kept alive by a tiny holder process made with
`unshare --net`; commands enter it with `nsenter --net=/proc/HOLDER/ns/net`. Before any
command runs, the namespace is checked to be a different one from ours and to have no
interface but `lo`; a namespace that cannot be made raises `NamespaceUnavailable` (the
fixtures turn that into a skip), so a real CLI never runs unconfined.

A `Scratch` is the folder tree that stands in for the user's machine: HOME, TMPDIR,
XDG_RUNTIME_DIR (mode 700), CODEX_HOME, the CLIs' config files pointing at the model stub
(codex's config.toml, gemini's, opencode's and Qwen Code's settings; Copilot's provider
variables),
and one working folder per CLI under `workspace/`. `Scratch.env()` is the whole
environment a confined command gets; nothing is inherited from the test process.
"""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
PINS_FILE = REPO / "scripts" / "cli-pins.json"
INSTALL_SCRIPT = REPO / "scripts" / "install-clis"

# Dummy credentials: the stub accepts anything, and nothing real may ever be used here.
DUMMY_ANTHROPIC_KEY = "sk-ant-dummy-offline-key"
DUMMY_OPENAI_KEY = "sk-dummy-offline-key"
DUMMY_GEMINI_KEY = "dummy-offline-key"
CODEX_MODEL = "gpt-5.5"  # a slug codex knows; an unknown one gives an error item
OPENCODE_MODEL = "stub/stub-model"  # provider/model, both declared in opencode's config below
QWEN_MODEL = "qwen-stub"  # any name: Qwen Code passes it through to the OpenAI-compatible API
COPILOT_MODEL = "copilot-stub"  # any name: Copilot's BYOK mode sends it as the wire model


class NamespaceUnavailable(RuntimeError):
    """No loopback-only network namespace can be made here; the reason is the message."""


def wait_for_line(stream, deadline: float, what: str) -> bytes:
    """The next line of a pipe, waiting at most until `deadline` (time.monotonic())."""
    buf = bytearray()
    fd = stream.fileno()
    while not buf.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"{what}: no line within the deadline (got {bytes(buf)!r})")
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            chunk = os.read(fd, 1)
            if not chunk:
                break
            buf += chunk
    return bytes(buf)


def _ns_inode(pid: int | str) -> Optional[int]:
    try:
        return os.stat(f"/proc/{pid}/ns/net").st_ino
    except OSError:
        return None


def _interfaces(pid: int) -> list[str]:
    lines = Path(f"/proc/{pid}/net/dev").read_text().splitlines()[2:]
    return [line.split(":", 1)[0].strip() for line in lines if ":" in line]


class Namespace:
    """A loopback-only network namespace, alive until `close()`."""

    def __init__(self, timeout: float = 10.0):
        for tool in ("unshare", "nsenter", "ip"):
            if not shutil.which(tool):
                raise NamespaceUnavailable(f"'{tool}' is not installed (util-linux / iproute2)")
        # The holder lives until its stdin closes: when the test process dies, so does it.
        try:
            self.holder = subprocess.Popen(
                ["unshare", "--net", "--", "sh", "-c", "ip link set lo up && echo up && exec cat >/dev/null"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        except OSError as exc:
            raise NamespaceUnavailable(f"cannot run unshare: {exc}") from exc
        try:
            line = wait_for_line(self.holder.stdout, time.monotonic() + timeout, "namespace holder")
        except TimeoutError as exc:
            self.close()
            raise NamespaceUnavailable(str(exc)) from exc
        if line.strip() != b"up":
            err = self.holder.stderr.read().decode(errors="replace").strip() if self.holder.poll() is not None else ""
            self.close()
            raise NamespaceUnavailable(f"unshare --net failed: {err or line!r} (needs root or CAP_SYS_ADMIN)")
        self.pid = self.holder.pid
        self.inode = _ns_inode(self.pid)
        interfaces = _interfaces(self.pid)
        if self.inode is None or self.inode == _ns_inode("self") or interfaces != ["lo"]:
            self.close()
            raise NamespaceUnavailable(f"the new namespace is not loopback-only (interfaces {interfaces})")
        self.path = f"/proc/{self.pid}/ns/net"

    def wrap(self, argv: list[str]) -> list[str]:
        """argv that runs inside the namespace (nsenter execs it: the pid stays the same)."""
        if self.holder.poll() is not None:
            raise NamespaceUnavailable("the namespace holder has exited")
        return ["nsenter", f"--net={self.path}", "--", *argv]

    def processes(self) -> list[int]:
        """Every live process inside the namespace except the holder."""
        pids = []
        for entry in os.listdir("/proc"):
            if entry.isdigit() and int(entry) != self.pid and _ns_inode(entry) == self.inode:
                pids.append(int(entry))
        return pids

    def kill_all(self, grace: float = 3.0) -> list[int]:
        """Stop every process left inside (TERM, then KILL after `grace` s); their pids."""
        if self.inode is None:
            return []
        fds: dict[int, int] = {}
        for pid in self.processes():
            try:
                fd = os.pidfd_open(pid)
            except OSError:
                continue
            # The pidfd pins the process: checked after opening, the pid cannot be a reused one.
            if _ns_inode(pid) == self.inode:
                fds[fd] = pid
            else:
                os.close(fd)
        victims = list(fds.values())
        try:
            for sig in (signal.SIGTERM, signal.SIGKILL):
                wait_for_exit(fds, sig, grace)
                if not fds:
                    break
        finally:
            for fd in fds:
                os.close(fd)
        return victims

    def close(self) -> None:
        if getattr(self, "inode", None) is not None:
            self.kill_all()
        if self.holder.stdin and not self.holder.stdin.closed:
            self.holder.stdin.close()
        try:
            self.holder.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.holder.kill()
            self.holder.wait()
        for stream in (self.holder.stdout, self.holder.stderr):
            if stream:
                stream.close()


def wait_for_exit(fds: dict[int, int], sig: int, timeout: float) -> None:
    """Signal each pidfd's process, then wait until they exit or `timeout` passes.

    Exited ones are closed and removed from `fds`. A pidfd becomes readable when its
    process exits, whoever its parent is, so this waits on the event, not on a clock.
    """
    for fd in list(fds):
        try:
            signal.pidfd_send_signal(fd, sig)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    while fds:
        left = deadline - time.monotonic()
        if left <= 0:
            return
        ready, _, _ = select.select(list(fds), [], [], left)
        for fd in ready:
            del fds[fd]
            os.close(fd)


@dataclass
class Scratch:
    """The scratch folder tree that stands in for a user's machine."""

    root: Path

    @property
    def home(self) -> Path:
        return self.root / "home" / "orch"

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    @property
    def runtime(self) -> Path:
        return self.root / "run"

    @property
    def codex_home(self) -> Path:
        return self.home / ".codex"

    def workdir(self, name: str) -> Path:
        path = self.root / "workspace" / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def create(self, port: int) -> None:
        for d in (self.home, self.tmp, self.codex_home, self.home / ".gemini", self.home / ".claude",
                  self.opencode_config.parent, self.home / ".qwen"):
            d.mkdir(parents=True, exist_ok=True)
        self.runtime.mkdir(parents=True, exist_ok=True)
        self.runtime.chmod(0o700)
        (self.codex_home / "config.toml").write_text(codex_config(port))
        (self.home / ".gemini" / "settings.json").write_text(json.dumps(GEMINI_SETTINGS, indent=2) + "\n")
        self.opencode_config.write_text(json.dumps(opencode_config(port), indent=2) + "\n")
        (self.home / ".qwen" / "settings.json").write_text(json.dumps(QWEN_SETTINGS, indent=2) + "\n")

    @property
    def opencode_config(self) -> Path:
        """$XDG_CONFIG_HOME/opencode/opencode.json, opencode's global config."""
        return self.home / ".config" / "opencode" / "opencode.json"

    def env(self, port: int, bin_dir: Optional[Path], extra: Optional[dict[str, str]] = None) -> dict[str, str]:
        """The complete environment of a confined command (nothing from the test process)."""
        path = [str(bin_dir)] if bin_dir else []
        node = shutil.which("node")
        if node:
            path.append(str(Path(node).parent))
        path.append(str(Path(sys.executable).parent))
        path += ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"]
        base = f"http://127.0.0.1:{port}"
        env = {
            "PATH": os.pathsep.join(dict.fromkeys(path)),
            "LANG": "C.UTF-8",
            "HOME": str(self.home),
            "USER": "orch",
            "TMPDIR": str(self.tmp),
            "XDG_RUNTIME_DIR": str(self.runtime),
            "XDG_CONFIG_HOME": str(self.home / ".config"),
            "XDG_CACHE_HOME": str(self.home / ".cache"),
            "XDG_DATA_HOME": str(self.home / ".local" / "share"),
            "XDG_STATE_HOME": str(self.home / ".local" / "state"),
            # Claude Code
            "ANTHROPIC_BASE_URL": base,
            "ANTHROPIC_API_KEY": DUMMY_ANTHROPIC_KEY,
            "CLAUDE_CODE_TMPDIR": str(self.tmp),
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            "DISABLE_TELEMETRY": "1",
            "DISABLE_AUTOUPDATER": "1",
            "DISABLE_ERROR_REPORTING": "1",
            # Codex: the provider and quiet settings are in $CODEX_HOME/config.toml
            "CODEX_HOME": str(self.codex_home),
            "FAKE_API_KEY": DUMMY_OPENAI_KEY,
            # Gemini CLI
            "GEMINI_API_KEY": DUMMY_GEMINI_KEY,
            "GOOGLE_GEMINI_BASE_URL": base,
            "GEMINI_CLI_TRUST_WORKSPACE": "true",
            "GEMINI_TELEMETRY_ENABLED": "false",
            # opencode: the provider is in $XDG_CONFIG_HOME/opencode/opencode.json
            "OPENCODE_DISABLE_AUTOUPDATE": "1",
            "OPENCODE_DISABLE_MODELS_FETCH": "1",
            "OPENCODE_DISABLE_LSP_DOWNLOAD": "1",
            # Qwen Code: the OpenAI-compatible provider; the rest is in ~/.qwen/settings.json
            "OPENAI_BASE_URL": f"{base}/v1",
            "OPENAI_API_KEY": DUMMY_OPENAI_KEY,
            "OPENAI_MODEL": QWEN_MODEL,
            # GitHub Copilot CLI: its own-provider (BYOK) mode, offline (no GitHub login, telemetry
            # or update check: without COPILOT_OFFLINE it looks one host up in DNS at start)
            "COPILOT_PROVIDER_BASE_URL": f"{base}/v1",
            "COPILOT_PROVIDER_TYPE": "openai",
            "COPILOT_PROVIDER_WIRE_API": "completions",
            "COPILOT_PROVIDER_API_KEY": DUMMY_OPENAI_KEY,
            "COPILOT_MODEL": COPILOT_MODEL,
            "COPILOT_OFFLINE": "true",
            "COPILOT_AUTO_UPDATE": "false",
        }
        if os.geteuid() == 0:
            # Claude Code refuses its bypass modes as root unless told it runs in a sandbox,
            # which it does here; the permission ladder's top rung needs it.
            env["IS_SANDBOX"] = "1"
        env.update(extra or {})
        return env

    def clear_gemini_lock(self) -> bool:
        """Remove a stale ~/.gemini/projects.json.lock (it stalls the next run 14-53 s)."""
        lock = self.home / ".gemini" / "projects.json.lock"
        if lock.is_dir() and not lock.is_symlink():
            shutil.rmtree(lock, ignore_errors=True)
            return True
        if lock.exists() or lock.is_symlink():
            lock.unlink()
            return True
        return False

    def neutral(self, text: str) -> str:
        """Scratch paths rewritten to the neutral ones the committed captures use."""
        root = str(self.root)
        slug = re.sub(r"[^A-Za-z0-9]", "-", root)
        # opencode shows a path relative to / (no leading slash) in tool titles and prompts
        return text.replace(root, "").replace(root.lstrip("/"), "").replace(slug, "")


GEMINI_SETTINGS = {
    "security": {"auth": {"selectedType": "gemini-api-key"}},
    "privacy": {"usageStatisticsEnabled": False},
    "telemetry": {"enabled": False},
}


QWEN_SETTINGS = {
    "security": {"auth": {"selectedType": "openai"}},
    "privacy": {"usageStatisticsEnabled": False},
    "telemetry": {"enabled": False},
    "general": {"enableAutoUpdate": False},
    # After each run Qwen Code asks the model, in the background, what to remember: an
    # extra request no test scripts.
    "memory": {"enableManagedAutoMemory": False},
}


def opencode_config(port: int) -> dict:
    """opencode's global config: the stub as an OpenAI-compatible provider, nothing shared."""
    provider, model = OPENCODE_MODEL.split("/")
    return {
        "$schema": "https://opencode.ai/config.json",
        "provider": {provider: {
            "npm": "@ai-sdk/openai-compatible",  # bundled in the binary: nothing is installed
            "name": "orch model stub",
            "options": {"baseURL": f"http://127.0.0.1:{port}/v1", "apiKey": DUMMY_OPENAI_KEY},
            "models": {model: {"name": "stub model"}},
        }},
        "model": OPENCODE_MODEL,
        "autoupdate": False,
        "share": "disabled",
    }


def codex_config(port: int) -> str:
    """$CODEX_HOME/config.toml: the model stub as provider, and no traffic to public hosts."""
    return f"""model_provider = "fake"
model = "{CODEX_MODEL}"

[model_providers.fake]
name = "fake"
base_url = "http://127.0.0.1:{port}/v1"
env_key = "FAKE_API_KEY"
wire_api = "responses"

[analytics]
enabled = false

[otel]
exporter = "none"
metrics_exporter = "none"
trace_exporter = "none"

[features]
plugins = false
remote_plugin = false
apps = false
daemon_auto_start = false
"""


def load_pins() -> dict[str, dict[str, str]]:
    """{cli: {package, version, bin}} from scripts/cli-pins.json."""
    return json.loads(PINS_FILE.read_text())["clis"]

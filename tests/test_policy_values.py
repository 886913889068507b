"""Strict policy values: numbers are numbers, finite and in range; per-CLI tables name real
CLIs; folders stay inside the allowed roots; nothing is created under a bad policy; and
whatever orch prints as JSON is JSON (safety/policy.py, spend/budget.py, store/jsonsafe.py).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.adapters import ADAPTERS
from orchestrator.core.errors import PolicyError
from orchestrator.safety.policy import load_policy_file
from orchtest import run_orch, wait_until


def strict_json(text: str):
    """json.loads that refuses NaN and Infinity, as every JSON reader but Python's does."""
    def refuse(constant: str):
        raise ValueError(f"{constant} is not JSON")
    return json.loads(text, parse_constant=refuse)


def write_policy(ws: Path, text: str) -> Path:
    path = ws / ".orch" / "policy.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


VALUES = [
    ("usd-as-string", "[budget]\nsession_usd = \"20\"\n", 2,
     'budget.session_usd: must be a number (unquoted), not the string "20"'),
    ("usd-infinite", "[budget]\n\nsession_usd = inf\n", 3, "budget.session_usd: must be a finite number, not the number inf"),
    ("usd-nan", "[budget]\nagent_usd = nan\n", 2, "budget.agent_usd: must be a finite number, not the number nan"),
    ("usd-negative", "[budget]\nsession_usd = -5\n", 2, "budget.session_usd: must be greater than 0, not the number -5"),
    ("usd-minus-infinity", "[budget]\nsession_usd = -inf\n", 2, "budget.session_usd: must be a finite number"),
    ("tokens-as-float", "[budget]\nsession_tokens = 1e6\n", 2, "budget.session_tokens: must be a whole number"),
    ("tokens-as-bool", "[budget]\nagent_tokens = true\n", 2, "budget.agent_tokens: must be a whole number"),
    ("warn-at-string", "[budget]\nwarn_at = \"0.5\"\n", 2, "budget.warn_at: must be a number"),
    ("stall-infinite", "[limits]\nstall_after_seconds = inf\n", 2, "limits.stall_after_seconds: must be a finite number"),
    ("grace-minus-infinity", "[limits]\nlimit_grace_seconds = -inf\n", 2, "limits.limit_grace_seconds: must be a finite"),
    ("wall-beyond-a-year", "[limits]\nrun_wall_seconds = 99999999999\n", 2,
     "limits.run_wall_seconds: must be less than or equal to 31622400, not the number 99999999999"),
    ("cap-of-an-unknown-cli", "[limits]\nmax_per_cli = { nonsense = 2 }\n", 2,
     "limits.max_per_cli: 'nonsense' is not a CLI orch knows (" + ", ".join(sorted(ADAPTERS)) + ")"),
    ("cap-zero", "[limits]\nmax_per_cli = { claude = 0 }\n", 2, "limits.max_per_cli: max_per_cli.claude must be at least 1"),
    ("cap-as-string", "[limits]\nmax_per_cli = { claude = \"2\" }\n", 2, "limits.max_per_cli.claude: must be a whole number"),
    ("notify-seconds-as-string", "[notify]\ngive_up_after_seconds = \"600\"\n", 2,
     "notify.give_up_after_seconds: must be a number"),
    ("notify-seconds-infinite", "[notify]\ngive_up_after_seconds = inf\n", 2,
     "notify.give_up_after_seconds: must be a finite number"),
]


@pytest.mark.parametrize("name,text,line,words", VALUES, ids=[v[0] for v in VALUES])
def test_a_value_that_is_not_a_finite_number_in_range_is_one_line_naming_its_line(workspace_dir, name, text, line,
                                                                                  words):
    path = write_policy(workspace_dir, text)
    proc = run_orch("policy", "check", cwd=workspace_dir)
    assert proc.returncode == 2, proc.stdout
    err = proc.stderr.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert err.startswith(f"orch: invalid policy {path}:{line}: {words}"), err


def test_sound_values_load(tmp_path):
    path = tmp_path / "policy.toml"
    path.write_text("[budget]\nsession_usd = 20\nagent_usd = 2.5\nsession_tokens = 1000000\n"
                    "[limits]\nmax_per_cli = { claude = 3, codex = 2, sim = 1 }\nstall_after_seconds = 30\n")
    policy = load_policy_file(path)
    assert policy.budget.session_usd == 20.0 and policy.limits.max_per_cli == {"claude": 3, "codex": 2, "sim": 1}


UP_TO_ROOT = "[paths]\nextra_dirs = [\"" + "../" * 40 + "\"]\n"


@pytest.mark.parametrize("command", [("policy", "check"), ("start", "ship it", "--architect", "sim", "--implementer",
                                                           "sim", "--reviewer", "sim"),
                                     ("run", "ship it", "--architect", "sim", "--implementer", "sim", "--reviewer",
                                      "sim"),
                                     ("launch", "--cli", "sim", "--role", "worker", "--prompt", "hi")],
                         ids=["policy-check", "start", "run", "launch"])
def test_extra_dirs_that_climb_to_the_root_are_refused_before_anything_is_created(workspace_dir, command):
    write_policy(workspace_dir, UP_TO_ROOT)
    proc = run_orch(*command, cwd=workspace_dir)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    err = proc.stderr.strip()
    assert len(err.splitlines()) == 1 and "would open the whole filesystem" in err and "Traceback" not in err
    assert sorted(p.name for p in (workspace_dir / ".orch").iterdir()) == ["policy.toml"]  # no session, no pointer


def test_orch_budget_json_is_json_or_one_line_refused_whatever_the_policy_says(workspace_dir):
    """`session_usd = inf` once made `orch budget --json` print Infinity (not JSON). Every
    command that prints JSON now prints JSON, or refuses the policy in one line."""
    agent = run_orch("launch", "--cli", "sim", "--role", "worker", "--prompt", "hi", cwd=workspace_dir,
                     check=True).stdout.split()[-1]
    wait_until(lambda: strict_json(run_orch("status", "--json", cwd=workspace_dir, check=True).stdout)
               ["agents"][0]["state"] in ("idle", "done"), timeout=60, what=f"{agent} to finish")
    for text in ("[budget]\nsession_usd = inf\n", "[budget]\nagent_usd = nan\n",
                 f"[budget]\nsession_usd = {2 ** 53}\nagent_tokens = {2 ** 53}\n"):
        write_policy(workspace_dir, text)
        for args in (("budget", "--json"), ("status", "--json"), ("list", "--json"), ("policy", "show", "--json"),
                     ("check", "--json"), ("report", "--json")):
            proc = run_orch(*args, cwd=workspace_dir)
            assert "Traceback" not in proc.stderr, (args, proc.stderr)
            if proc.returncode == 2:
                assert len(proc.stderr.strip().splitlines()) == 1 and "invalid policy" in proc.stderr
                continue
            strict_json(proc.stdout)  # raises on NaN / Infinity
    budget = strict_json(run_orch("budget", "--json", cwd=workspace_dir, check=True).stdout)
    assert budget["budget"]["session_usd"] == 2 ** 53


def test_print_json_never_writes_nan_or_infinity():
    from click.testing import CliRunner
    import click

    from orchestrator.commands.common import print_json

    @click.command()
    def show():
        print_json({"a": float("inf"), "b": [float("nan"), -float("inf")], "c": "\ud83d cut", "d": datetime(2026, 1, 1)})

    out = CliRunner().invoke(show).output
    assert strict_json(out) == {"a": 1e15, "b": [0.0, -1e15], "c": "\ufffd cut", "d": "2026-01-01 00:00:00"}


# --------------------------------------------------------------------------- fuzz: the class, not the cases

NUMBER_KEYS = {
    "limits": ["max_recoveries", "run_wall_seconds", "max_turns", "stall_after_seconds", "max_nudges", "max_restarts",
               "max_task_attempts", "stop_hook_limit", "limit_grace_seconds", "limit_backoff_max_seconds",
               "max_agents"],
    "budget": ["session_usd", "agent_usd", "session_tokens", "agent_tokens", "warn_at"],
    "notify": ["give_up_after_seconds"],
}
OTHER_KEYS = {"limits": ["on_usage_limit", "max_per_cli"], "budget": ["on_budget"], "notify": ["on", "urls"],
              "runner": ["kind", "address", "env"], "git": ["land", "worktrees_dir"], "paths": ["extra_dirs"],
              "roles.worker": ["max_level", "dangerous"]}
#: A sound value of each other key, drawn as often as any value: the numbers must not hide behind them.
SOUND = {"on_usage_limit": ["wait", "fallback"], "on_budget": ["finish", "stop"], "on": [["failed"], []],
         "urls": [[]], "kind": ["local"], "address": ["auto"], "env": [["API_BASE"]], "land": ["branch", "merge"],
         "worktrees_dir": ["", "wt"], "extra_dirs": [[], ["shared"]], "max_level": ["read", "edit", "full"],
         "dangerous": [True, False]}

scalars = st.one_of(
    st.integers(min_value=-(2 ** 64), max_value=2 ** 64), st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(), st.text(st.characters(blacklist_categories=("Cs",)), max_size=12), st.sampled_from(["inf", "nan", "20", "claude", "read", "..", "/", "~"]),
)
values = st.one_of(scalars, st.lists(scalars, max_size=3),
                   st.dictionaries(st.sampled_from(["claude", "codex", "sim", "nonsense", "Claude", ""]), scalars,
                                   max_size=3))


def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return "nan" if v != v else "inf" if v == float("inf") else "-inf" if v == -float("inf") else repr(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return "{ " + ", ".join(f"{json.dumps(k)} = {toml_value(x)}" for k, x in v.items()) + " }"


#: Numbers at and past every edge (drawn more often than the other shapes of value).
numbers = st.one_of(st.integers(min_value=-(2 ** 70), max_value=2 ** 70), st.floats(allow_nan=True, allow_infinity=True),
                    st.sampled_from([0, 1, -1, 0.5, 2 ** 53, 2 ** 53 + 1, 1e300, 31622400, 31622401, float("inf"),
                                     float("nan"), -float("inf")]))
caps = st.dictionaries(st.sampled_from(["claude", "codex", "sim", "nonsense", "Claude", ""]), numbers, max_size=3)


@st.composite
def policies(draw) -> tuple[str, dict]:
    """(TOML text, the raw values written: table -> key -> value)."""
    raw: dict[str, dict] = {}
    pairs = [(t, k) for t, keys in list(NUMBER_KEYS.items()) + list(OTHER_KEYS.items()) for k in keys]
    for table, key in draw(st.lists(st.sampled_from(pairs), unique=True, min_size=1, max_size=4)):
        if key == "max_per_cli":
            value = draw(st.one_of(caps, values))
        elif key in NUMBER_KEYS.get(table, ()):
            value = draw(st.one_of(numbers, numbers, numbers, values))
        else:
            value = draw(st.one_of(st.sampled_from(SOUND[key]), st.sampled_from(SOUND[key]), values))
        raw.setdefault(table, {})[key] = value
    text = "".join(f"[{t}]\n" + "".join(f"{k} = {toml_value(v)}\n" for k, v in kv.items()) for t, kv in raw.items())
    return text, raw


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(drawn=policies())
def test_any_policy_either_loads_sound_or_is_one_line_refused(tmp_path, drawn):
    """Whatever types and values a policy holds, loading it gives a policy every consumer can
    use (finite numbers, JSON, dates, caps of real CLIs) or a one-line PolicyError: never a
    traceback, never a coerced or infinite value."""
    from orchestrator.adapters import ADAPTERS
    from orchestrator.spend.budget import measure
    from orchestrator.spend.caps import ConcurrencyCaps

    text, raw = drawn
    path = tmp_path / "policy.toml"
    path.write_text(text)
    try:
        policy = load_policy_file(path)
    except PolicyError as e:
        assert "\n" not in e.message and e.message.startswith(("invalid policy ", "policy paths")), e.message
        return
    for table, keys in NUMBER_KEYS.items():  # numbers are numbers: nothing was coerced into one
        for key in keys:
            if key in raw.get(table, {}):
                v = raw[table][key]
                assert isinstance(v, (int, float)) and not isinstance(v, bool) and v == v and abs(v) != float("inf"), \
                    (table, key, v)
    for cli, n in (raw.get("limits", {}).get("max_per_cli") or {}).items():
        assert cli in ADAPTERS and isinstance(n, int) and not isinstance(n, bool)
    json.dumps(policy.model_dump(mode="json"), allow_nan=False)
    limits, budget = policy.limits, policy.budget
    start = datetime.now(timezone.utc)
    for seconds in (limits.run_wall_seconds, limits.stall_after_seconds, limits.limit_grace_seconds,
                    limits.limit_backoff_max_seconds, policy.notify.give_up_after_seconds):
        assert isinstance(seconds, (int, float)) and not isinstance(seconds, bool) and seconds == seconds
        start + timedelta(seconds=seconds)  # no overflow
    for value in (budget.session_usd, budget.agent_usd, budget.session_tokens, budget.agent_tokens):
        assert value is None or (not isinstance(value, (bool, str)) and 0 < value <= 2 ** 53)
    assert set(limits.max_per_cli) <= set(ADAPTERS)
    caps = ConcurrencyCaps(limits.max_agents, limits.max_per_cli, [])
    for cli in ADAPTERS:
        assert caps.full(cli) is None
    assert measure(budget, []) is not None

"""Secrets never reach orch's files: the shapes, the environment net, and a real session."""

from __future__ import annotations

import json
import secrets
import string

import pytest

from orchestrator.core.models import AgentState
from orchestrator.runtime.ingest import sync_agent
from orchestrator.safety.redaction import MASK, redact, redact_env, redact_text, scrub_file, secret_env_values
from orchestrator.store.sessions import Workspace
from orchtest import orch_json, run_orch, wait_until


def _rand(n: int, alphabet: str = string.ascii_letters + string.digits) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(n))


@pytest.fixture(autouse=True)
def _scratch_home(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path_factory.mktemp("home")))
    monkeypatch.setenv("TMPDIR", str(tmp_path_factory.mktemp("tmp")))


# --------------------------------------------------------------------------- shapes

SHAPES = [
    ("anthropic", f"key sk-ant-api03-{_rand(40)}"),
    ("openai", f"OPENAI said sk-proj-{_rand(40)}"),
    ("stripe", f"sk_live_{_rand(24)}"),
    ("google", f"AIza{_rand(35)}"),
    ("github", f"ghp_{_rand(36)}"),
    ("github-pat", f"github_pat_{_rand(40)}"),
    ("gitlab", f"glpat-{_rand(20)}"),
    ("huggingface", f"hf_{_rand(34)}"),
    ("npm", f"npm_{_rand(36)}"),
    ("slack", f"xoxb-{_rand(24)}"),
    ("aws-id", f"AKIA{_rand(16, string.ascii_uppercase + string.digits)}"),
    ("jwt", f"eyJ{_rand(20)}.eyJ{_rand(30)}.{_rand(30)}"),
]


@pytest.mark.parametrize("name,text", SHAPES, ids=[s[0] for s in SHAPES])
def test_known_credential_shapes_are_masked(name, text):
    secret = text.split()[-1]
    out = redact_text(text)
    assert secret not in out and MASK in out


@pytest.mark.parametrize("text,secret", [
    ("Authorization: Bearer abc.DEF-123_456789xyz", "abc.DEF-123_456789xyz"),
    ('curl -H "Authorization: Basic dXNlcjpwYXNzd29yZDEyMw==" https://x', "dXNlcjpwYXNzd29yZDEyMw=="),
    ("authorization=token 9f8e7d6c5b4a39281706", "9f8e7d6c5b4a39281706"),
    ("Cookie: session=8c1f0e2d9b; theme=dark", "session=8c1f0e2d9b"),
    ("https://deploy:Tr0ub4dor-3@git.example.com/repo.git", "Tr0ub4dor-3"),
    ("machine api.example.com login bob password hunter2hunter2", "hunter2hunter2"),
    ("machine x\n  login bob\n  password s3cr3t-value\n", "s3cr3t-value"),
    ("aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
    ('{"client_secret": "a secret with spaces"}', "a secret with spaces"),
    ("DB_PASSWORD='pa ss wo rd'", "pa ss wo rd"),
    ("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAA\n-----END OPENSSH PRIVATE KEY-----", "b3BlbnNzaC1rZXktdjEAAAA"),
    ("-----BEGIN PGP PRIVATE KEY BLOCK-----\nlQOYBF0\n-----END PGP PRIVATE KEY BLOCK-----", "lQOYBF0"),
    ("-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA (cut off", "MIIEowIBAAKCAQEA"),
])
def test_headers_urls_netrc_credentials_files_and_private_keys_are_masked(text, secret):
    assert secret not in redact_text(text)


@pytest.mark.parametrize("text", [
    '"input_tokens": 1234567, "output_tokens": 89012',
    "the token limit is 4096 tokens",
    "I will reset the password reset page",
    "Authorization header missing",
    "git log --oneline",
])
def test_ordinary_text_is_left_alone(text):
    assert redact_text(text) == text


def test_environment_values_are_masked_wherever_they_appear(monkeypatch):
    plain = "correct-horse-battery-staple"
    monkeypatch.setenv("MY_SERVICE_PASSWORD", plain)
    monkeypatch.setenv("DEPLOY_TOKEN", "not-a-known-shape-1234")
    monkeypatch.setenv("EDITOR_MODE", "not-a-secret-name")
    assert plain in secret_env_values()
    out = redact_text(f"the agent echoed {plain} and not-a-known-shape-1234 and not-a-secret-name")
    assert plain not in out and "not-a-known-shape-1234" not in out and "not-a-secret-name" in out
    env = redact_env({"MY_SERVICE_PASSWORD": plain, "PATH": "/usr/bin", "IS_SANDBOX": "1"})
    assert env == {"MY_SERVICE_PASSWORD": MASK, "PATH": "/usr/bin", "IS_SANDBOX": "1"}


def test_structures_mask_values_under_secret_keys_whatever_their_shape():
    doc = {"api_key": "abcd", "headers": {"Authorization": "Bearer xyz", "Accept": "json"},
           "usage": {"input_tokens": 12, "max_tokens": "4096"}, "notes": [f"ghp_{_rand(36)}"]}
    out = redact(doc)
    assert out["api_key"] == MASK and out["headers"]["Authorization"] == MASK
    assert out["headers"]["Accept"] == "json" and out["usage"] == {"input_tokens": 12, "max_tokens": "4096"}
    assert out["notes"] == [MASK]


def test_scrub_file_masks_in_place_without_moving_a_byte(tmp_path, monkeypatch):
    monkeypatch.setenv("GITHUB_TOKEN", "gho_" + _rand(36))
    token = f"sk-ant-api03-{_rand(40)}"
    lines = [json.dumps({"type": "text", "text": f"my key is {token}"}),
             json.dumps({"type": "tool", "output": f"echo {__import__('os').environ['GITHUB_TOKEN']}"}),
             json.dumps({"type": "text", "text": "nothing secret here: café"}, ensure_ascii=False)]
    path = tmp_path / "stdout.jsonl"
    data = ("\n".join(lines) + "\n").encode()
    path.write_bytes(data + b'{"partial": "sk-ant-api03-')
    end = len(data)
    assert scrub_file(path, 0, end) == 2
    after = path.read_bytes()
    assert len(after) == len(data) + len(b'{"partial": "sk-ant-api03-')
    assert token.encode() not in after and __import__("os").environ["GITHUB_TOKEN"].encode() not in after
    for line in after[:end].decode().splitlines():
        json.loads(line)  # still valid JSON, line for line
    assert after[end:] == b'{"partial": "sk-ant-api03-'  # a line still being written is left alone
    assert "café" in after.decode()
    assert scrub_file(path, 0, end) == 0  # idempotent


@pytest.mark.parametrize("quoted", [
    'curl -H "Authorization: Bearer {v}" https://x',
    'curl -H "authorization: token {v}"',
    'api_key={v}\\',  # a value that really ends in a backslash
    'PASSWORD: {v}\t(tab)',
])
def test_scrubbing_inside_json_keeps_every_escape_whole(tmp_path, quoted):
    """A secret right before an escape (`TOKEN\\"` in the raw line) is masked up to the escape,
    never through its backslash: the line stays valid JSON and the value is gone."""
    value = "Zq8Xw3" + _rand(20)
    text = quoted.format(v=value)
    path = tmp_path / "stdout.jsonl"
    path.write_bytes((json.dumps({"type": "text", "text": text}) + "\n").encode())
    assert scrub_file(path) >= 1
    line = path.read_bytes().decode()
    assert value[:6] not in line and json.loads(line)["type"] == "text", line


# --------------------------------------------------------------------------- a real session


def _store():
    return Workspace().resolve(None)


def test_secrets_planted_in_the_environment_and_in_agent_output_never_reach_orch_files(workspace_dir, monkeypatch):
    planted = {
        "ANTHROPIC_API_KEY": f"sk-ant-api03-{_rand(48)}",
        "OPENAI_API_KEY": f"sk-proj-{_rand(48)}",
        "GITHUB_TOKEN": f"ghp_{_rand(36)}",
        "AWS_ACCESS_KEY_ID": f"AKIA{_rand(16, string.ascii_uppercase + string.digits)}",
        "AWS_SECRET_ACCESS_KEY": _rand(40),
        "GEMINI_API_KEY": f"AIza{_rand(35)}",
        "MY_SERVICE_PASSWORD": "correct-horse-battery-" + _rand(8),
    }
    for k, v in planted.items():
        monkeypatch.setenv(k, v)
    in_output = {"pasted": f"sk-ant-api03-{_rand(40)}", "bearer": _rand(32), "netrc": "netrc-" + _rand(16)}
    secrets_all = list(planted.values()) + list(in_output.values())

    echo = "echo $GITHUB_TOKEN $AWS_SECRET_ACCESS_KEY $MY_SERVICE_PASSWORD $ANTHROPIC_API_KEY"
    talker = run_orch("launch", "--cli", "sim", "--format", "claude", "--role", "worker", "--prompt",
                      f"use the key {in_output['pasted']} and tell me [sim: shell=\"{echo}\"]", check=True)
    talker_id = talker.stdout.strip().splitlines()[-1]
    asker = run_orch("launch", "--cli", "sim", "--format", "gemini", "--role", "worker", "--prompt",
                     f"fetch it [sim: shell=\"curl -H 'Authorization: Bearer {in_output['bearer']}' "
                     f"https://api.example.com\"]", check=True)
    asker_id = asker.stdout.strip().splitlines()[-1]
    writer = run_orch("launch", "--cli", "sim", "--format", "codex", "--role", "reviewer", "--prompt",
                      f"machine h login me password {in_output['netrc']} [sim: write=notes.txt]", check=True)
    writer_id = writer.stdout.strip().splitlines()[-1]

    store = _store()
    settled = (AgentState.IDLE, AgentState.DENIED, AgentState.FAILED, AgentState.BLOCKED_BY_POLICY)

    def all_settled():
        for a in (talker_id, asker_id, writer_id):
            sync_agent(store, a)
        return all(store.read_agent(a).state in settled for a in (talker_id, asker_id, writer_id))

    wait_until(all_settled, what="agents to settle")
    leaks = []
    for args in (("step",), ("status", "--json"), ("list",), ("logs", talker_id), ("logs", asker_id),
                 ("audit", "--json"), ("wait", "--timeout", "0.2"), ("report",), ("policy", "show")):
        proc = run_orch(*args)
        leaks += [(f"orch {args[0]} output", s) for s in secrets_all if s in proc.stdout + proc.stderr]
    assert store.read_agent(asker_id).state is AgentState.BLOCKED_BY_POLICY  # curl is never a narrow rule
    assert "Authorization" in store.read_agent(asker_id).pending_action.target
    assert secrets_all[0] not in json.dumps(store.read_agent(talker_id).runs[0].argv)

    for path in (workspace_dir / ".orch").rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            leaks += [(path.name, s) for s in secrets_all if s.encode() in data]
    assert leaks == [], [(where, s[:8] + "…") for where, s in leaks]


# --------------------------------------------------------------------------- the fast pre-check

from hypothesis import given, settings, strategies as st  # noqa: E402

from orchestrator.safety import redaction as _r  # noqa: E402

_PIECES = ["sk-ant-", "sk-proj-", "ghp_", "AIza", "AKIA", "xoxb-", "eyJ", "Bearer ", "Authorization: ",
           "api_key=", "API-KEY: ", "password ", "login x password ", "://u:", "@host", "Cookie: ", "token=",
           "-----BEGIN RSA PRIVATE KEY-----", "secret: '", "ya29.", "hf_", "npm_", "glpat-", "passphrase=",
           "client_secret=", "SESSION_KEY=", "ACCESS-KEY:", '"input_tokens": ', '"output_tokens":"', "120", "}",
           ",", "x" * 20, "A1b2C3d4E5f6G7h8I9j0", " ", "\n", "\"", "'"]


@settings(max_examples=3000, deadline=None)
@given(st.lists(st.sampled_from(_PIECES) | st.text(max_size=12), max_size=12))
def test_the_pre_check_never_skips_text_a_shape_would_mask(parts):
    text = "".join(parts)
    masked = any(_r._replace_shape(m) != m.group(0) for m in _r._SHAPE_RE.finditer(text))
    if masked:
        assert _r._may_hold_shape(text), text


@settings(max_examples=3000, deadline=None)
@given(st.lists(st.sampled_from(_PIECES) | st.text(max_size=12), max_size=12))
def test_the_pre_check_never_skips_an_unfinished_secret_at_the_end(parts):
    """open_secret_at_end searches for openings only in a window with a hint: each opening holds one."""
    window = "".join(parts)[-_r.OPENING_REACH:]
    if any(regex.search(window) for regex, _, _ in _r._opening_res()):
        assert _r._may_hold_shape(window), window


_TEXT = st.lists(st.sampled_from(_PIECES) | st.text(max_size=12), max_size=6).map("".join)
_KEYS = st.sampled_from(["text", "tool", "api_key", "Authorization", "input_tokens", "cookie", "target", "k"])
_JSON = st.recursive(st.none() | st.integers() | _TEXT,
                     lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_KEYS, inner, max_size=4),
                     max_leaves=12)


@settings(max_examples=2000, deadline=None)
@given(st.lists(_JSON, max_size=6))
def test_a_batch_is_redacted_exactly_as_its_items_one_by_one(items):
    """redact_all looks at the whole batch once; what it returns is what redacting each item gives."""
    assert _r.redact_all(items) == [redact(x) for x in items]


def test_remembered_clean_text_and_rows_are_looked_at_again_when_the_environment_changes(monkeypatch):
    value = "s3cr3t-" + _rand(20)
    text, row = f"deploy with {value} now", ["toolu_1", "Bash", f"curl -H {value}"]
    monkeypatch.delenv("DEPLOY_TOKEN", raising=False)
    assert redact_text(text) == text and redact([row])[0] is row  # clean, and remembered as clean
    assert redact([row])[0] is row
    monkeypatch.setenv("DEPLOY_TOKEN", value)  # now a secret of this process
    assert value not in redact_text(text)
    assert value not in json.dumps(redact([row])) and value not in json.dumps(_r.redact_all([{"t": text}]))
    with _r.one_environment():  # a batch takes the environment once: the same answers
        assert value not in redact_text(text) and value not in json.dumps(redact([row]))


@pytest.mark.parametrize("lines", [
    # gemini streams a message as deltas and keeps the joined text until the message ends
    [{"type": "init", "timestamp": "2026-11-24T14:36:29.463Z", "session_id": "s-1", "model": "auto"},
     {"type": "message", "timestamp": "2026-11-24T14:36:30.000Z", "role": "assistant",
      "content": "the key is KEY and more", "delta": True}],
    # a whole claude message: the run's final text is kept while the run lives
    [{"type": "system", "subtype": "init", "session_id": "s-1", "model": "m", "cwd": "/w"},
     {"type": "assistant", "message": {"role": "assistant", "content": [{"type": "text", "text": "use KEY"}]}},
     {"type": "result", "subtype": "success", "is_error": False, "result": "use KEY", "session_id": "s-1"}],
], ids=["gemini-pending-delta", "claude-final-text"])
def test_a_live_run_keeps_no_secret_in_its_meta(workspace_dir, tmp_path, monkeypatch, lines):
    """What the ingest keeps between syncs of a live run (half-streamed text, the last message)
    is written to meta.json: masked like everything else orch writes."""
    key = "ghp_" + "Zq8" * 12
    cli = "gemini" if lines[0]["type"] == "init" else "claude"
    gate = tmp_path / "go"
    body = "".join(f"printf '%s\\n' '{json.dumps(line).replace('KEY', key)}'\n" for line in lines)
    exe = tmp_path / cli
    exe.write_text(f"#!/bin/sh\n{body}while [ ! -e {gate} ]; do sleep 0.05; done\n")
    exe.chmod(0o755)
    monkeypatch.setenv(f"ORCH_{cli.upper()}_BIN", str(exe))
    agent_id = run_orch("launch", "--cli", cli, "--role", "worker", "--prompt", "hi", check=True).stdout.split()[-1]
    try:
        meta = next(workspace_dir.glob(f".orch/sessions/*/agents/{agent_id}/meta.json"))
        raw = meta.with_name("stdout.jsonl")
        wait_until(lambda: orch_json("status", agent_id)["state"] in ("running", "silent")
                   and json.loads(meta.read_text())["ingest"]["stdout_offset"] == raw.stat().st_size > 0, 30,
                   "every line to be read while the run lives")
        written = {p: p.read_text(errors="replace") for p in (workspace_dir / ".orch").rglob("*") if p.is_file()}
        assert not [str(p) for p, text in written.items() if key in text]
    finally:
        gate.touch()

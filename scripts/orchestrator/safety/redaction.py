"""Redaction of secrets from everything orch writes or serves.

Two nets: well-known credential shapes (API keys, tokens, private keys, `password=...`,
Authorization and Cookie headers, credentials in URLs, .netrc lines), and the literal
values of secret-looking environment variables of this process (which the agents
inherit, so they may echo them back). All shapes run as one regular expression, so the
cost is one pass over the text.
"""

from __future__ import annotations

import os
import re
from contextlib import contextmanager
from contextvars import ContextVar
from functools import lru_cache

TYPE_CHECKING = False  # (typing is not imported: it costs a read command 3 ms; annotations are strings)
if TYPE_CHECKING:
    from typing import Any, Iterator, Mapping

MASK = "[REDACTED]"

# Each shape is a pattern; where it holds `(?P<V>…)` only that group is masked (the key
# or header name stays readable), otherwise the whole match is.
_KEY_NAMES = (
    r"[A-Za-z0-9_.-]*(?:api[_-]?key|secret|token|passw(?:or)?d|passphrase|credential|auth[_-]?key|access[_-]?key"
    r"|private[_-]?key|client[_-]?secret|session[_-]?key)[A-Za-z0-9_.-]*"
)
_SHAPES = [
    r"sk-ant-[A-Za-z0-9_\-]{8,}",
    r"sk-(?:proj-|svcacct-)?[A-Za-z0-9_\-]{16,}",
    r"(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{10,}",
    r"AIza[0-9A-Za-z_\-]{30,}",
    r"gh[pousr]_[A-Za-z0-9]{20,}",
    r"github_pat_[A-Za-z0-9_]{20,}",
    r"glpat-[A-Za-z0-9_\-]{16,}",
    r"hf_[A-Za-z0-9]{30,}",
    r"npm_[A-Za-z0-9]{30,}",
    r"xox[abposr]-[A-Za-z0-9\-]{10,}",
    r"(?:AKIA|ASIA)[0-9A-Z]{16}",
    r"ya29\.[0-9A-Za-z_\-]{20,}",
    r"eyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}",
    r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----[\s\S]*?(?:-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----|$)",
    # Authorization: Bearer x / Basic x / token x, and a bare "Bearer x"
    r"(?i:\b(?:proxy-)?authorization\b[\"']?\s*[:=]\s*[\"']?(?:(?:bearer|basic|token|digest|bot)\s+)?)(?!\[REDACTED\])(?P<V>[^\s\"',;]{6,})",
    r"(?i:\bbearer\s+)(?!\[REDACTED\])(?P<V>[A-Za-z0-9._~+/\-]{12,}=*)",
    r"(?i:\b(?:set-)?cookie\s*:\s*)(?P<V>[^\r\n]+)",
    # scheme://user:password@host
    r"(?<=://)[^/\s:@\"']+:(?!\[REDACTED\])(?P<V>[^/\s@\"']+)(?=@)",
    # .netrc: `machine h login u password p` (on one line or several)
    r"(?i:\b(?:login|account)\s+\S+\s+password\s+)(?!\[REDACTED\])(?P<V>\S+)",
    r"(?im:^\s*password\s+)(?!\[REDACTED\])(?P<V>\S+)",
    # key = "value with spaces" for secret-looking key names
    rf"(?<![A-Za-z0-9])(?P<K>(?i:{_KEY_NAMES}))[\"']?\s*[:=]\s*(?P<Q>[\"'])(?!\[REDACTED\])(?P<V>[^\"'\n]{{4,}})(?P=Q)",
    # key = value, key: value
    rf"(?<![A-Za-z0-9])(?P<K>(?i:{_KEY_NAMES}))[\"']?\s*[:=]\s*[\"']?(?!\[REDACTED\])(?P<V>[^\s\"',;}}]{{6,}})",
]

_SECRET_ENV_NAME = re.compile(
    r"(?i)(KEY|TOKEN|SECRET|PASSW|CREDENTIAL|AUTH|COOKIE|SESSION_ID|PRIVATE|_PAT\b|_PAT_|DSN|WEBHOOK)"
)
_NOT_SECRET_ENV = {"TOKENIZERS_PARALLELISM", "GPG_AGENT_INFO", "SSH_AUTH_SOCK", "KEYTIMEOUT", "XAUTHORITY"}
_NOT_SECRET_VALUES = {"true", "false", "none", "null", "yes", "no", "1", "0"}


def _compile_shapes() -> tuple[re.Pattern[str], dict[str, tuple[str, str | None]]]:
    """One alternation; each alternative named S<i>, its value group V<i>, its key K<i>."""
    parts, groups = [], {}
    for i, shape in enumerate(_SHAPES):
        has_v = "(?P<V>" in shape
        has_k = "(?P<K>" in shape
        named = (shape.replace("(?P<V>", f"(?P<V{i}>").replace("(?P<K>", f"(?P<K{i}>")
                 .replace("(?P<Q>", f"(?P<Q{i}>").replace("(?P=Q)", f"(?P=Q{i})"))
        parts.append(f"(?P<S{i}>{named})")
        groups[f"S{i}"] = (f"V{i}" if has_v else "", f"K{i}" if has_k else None)
    return re.compile("|".join(parts)), groups


class _Shapes:
    """The shapes' one regular expression, compiled on first use: most texts show no hint of a
    shape, and a command that prints only those never pays for the compilation."""

    _compiled: "tuple[re.Pattern[str], dict[str, tuple[str, str | None]]] | None" = None

    @classmethod
    def get(cls) -> "tuple[re.Pattern[str], dict[str, tuple[str, str | None]]]":
        if cls._compiled is None:
            cls._compiled = _compile_shapes()
        return cls._compiled

# A literal that every shape above contains (case-insensitively). Text with none of them
# cannot hold a shape; looking for them is a few substring tests, where the shapes'
# alternation costs ~70 µs on a short string. Keep it a superset of the shapes and of the
# openings of an unfinished secret (_OPENINGS).
_SHAPE_HINTS = tuple(
    "sk- sk_ rk_ pk_ aiza ghp_ gho_ ghu_ ghs_ ghr_ github_pat_ glpat- hf_ npm_ xox akia asia ya29. eyj "
    "-----begin authorization bearer cookie :// passw passphrase login account secret token credential "
    "api_key api-key apikey auth_key auth-key authkey access_key access-key accesskey private_key "
    "private-key privatekey session_key session-key sessionkey".split()
)


# Usage counts ("input_tokens": 120) hold "token" but never a secret (the shapes skip
# numeric values too); without this every line of claude's stream would take the slow path.
_USAGE_COUNT = re.compile(r'"[a-z_]*tokens"\s*:\s*\d+(?:\.\d+)?(?=\s*[,}])')


def _hint_groups() -> tuple[tuple[str, tuple[str, ...]], ...]:
    """The hints but "token", grouped under a piece each member holds ("key" for api_key,
    authkey, session-key…): a text without the piece is passed over once for the group."""
    anchors = ("key", "gh", "k_", "pass")
    groups: dict[str, list[str]] = {}
    for hint in _SHAPE_HINTS:
        if hint != "token":
            groups.setdefault(next((a for a in anchors if a in hint and a != hint), hint), []).append(hint)
    return tuple((anchor, tuple(members) if members != [anchor] else ()) for anchor, members in groups.items())


_HINT_GROUPS = _hint_groups()


def _may_hold_shape(text: str) -> bool:
    """Whether text holds a hint of any shape (the usual answer, no, in one pass per group).
    "token" is looked at last: claude's every line holds it in a usage count."""
    low = text.lower()
    for anchor, members in _HINT_GROUPS:
        if anchor in low and (not members or any(h in low for h in members)):
            return True
    if "token" not in low:
        return False
    return "token" in _USAGE_COUNT.sub("", low)


def secret_env_values(env: Mapping[str, str] | None = None) -> list[str]:
    """Values of environment variables whose names look secret (longest first)."""
    env = os.environ if env is None else env
    vals = {
        v
        for k, v in env.items()
        if _SECRET_ENV_NAME.search(k) and k not in _NOT_SECRET_ENV and len(v) >= 6
        and not v.startswith("/") and v.lower() not in _NOT_SECRET_VALUES
    }
    return sorted(vals, key=len, reverse=True)


@lru_cache(maxsize=8)
def _env_regex(values: tuple[str, ...]) -> re.Pattern[str] | None:
    if not values:
        return None
    return re.compile("|".join(re.escape(v) for v in values))


def _replace_shape(m: re.Match[str]) -> str:
    value_group, key_group = _Shapes.get()[1].get(m.lastgroup or "", ("", None))
    if not value_group:
        return MASK
    start, end = m.span(value_group)
    if key_group:
        key = m.group(key_group).lower()
        # Token counts in usage records ("input_tokens": 123456) are not secrets.
        if "token" in key and m.group(value_group).replace(".", "").isdigit():
            return m.group(0)
    base = m.start()
    whole = m.group(0)
    return whole[: start - base] + MASK + whole[end - base:]


#: Inside `one_environment()`: this process's secret values, looked up once for the block.
_pinned: ContextVar[Any] = ContextVar("orch_redaction_env", default=None)


def _current_env_regex(latin1: bool = False) -> re.Pattern[str] | None:
    """The regex of this process's secret env values, rebuilt only when the env changes.

    Hashing the environment's raw items runs in C; scanning it in Python for every string
    redacted cost more than everything else the ingest does. Inside `one_environment()`
    not even the hash is taken again.
    """
    pinned = _pinned.get()
    if pinned is not None:
        return pinned[1] if latin1 else pinned[0]
    data = getattr(os.environ, "_data", None)
    if not isinstance(data, dict):  # not CPython's os.environ: nothing cheap to key a cache on
        return _build_env_regex(latin1)
    return _env_regex_for(hash(frozenset(data.items())), latin1)


@contextmanager
def one_environment() -> Iterator[None]:
    """Within the block the environment is taken as fixed: its secret values are looked up
    once, not for every string redacted (a batch of the ingest redacts thousands)."""
    if _pinned.get() is not None:
        yield
        return
    token = _pinned.set((_current_env_regex(False), _current_env_regex(True)))
    try:
        yield
    finally:
        _pinned.reset(token)


@lru_cache(maxsize=8)
def _env_regex_for(fingerprint: int, latin1: bool) -> re.Pattern[str] | None:
    """_build_env_regex, once per state of the environment (the fingerprint is the key)."""
    return _build_env_regex(latin1)


def _build_env_regex(latin1: bool) -> re.Pattern[str] | None:
    values = secret_env_values()
    if latin1:  # for text decoded byte for byte (scrubbing raw files by offset)
        values = [v.encode("utf-8", "replace").decode("latin-1") for v in values]
    return _env_regex(tuple(values))


#: Strings already found to hold no secret (under `_clean_env`'s values), and rows of them (a
#: remembered tool call: id, tool, target): a batch's parser state repeats the calls it
#: remembers, and each would cost a scan again. Only clean ones are kept — never one that
#: held a secret — and only short ones, a bounded number.
_clean: dict[str, None] = {}
_clean_rows: dict[tuple, None] = {}
_clean_row_ids: dict[int, list] = {}
_clean_env: list[Any] = [None]
CLEAN_MEMO_ENTRIES = 8192
CLEAN_MEMO_LENGTH = 2000


def _memo_env() -> "re.Pattern[str] | None":
    """This process's secret values now; the memos are dropped when they changed."""
    env_re = _current_env_regex()
    if env_re is not _clean_env[0]:
        _clean.clear()
        _clean_rows.clear()
        _clean_row_ids.clear()
        _clean_env[0] = env_re
    return env_re


def __getattr__(name: str) -> Any:
    if name == "_SHAPE_RE":  # the compiled shapes, for code that looks at them (tests)
        return _Shapes.get()[0]
    raise AttributeError(name)


def redact_text(text: str) -> str:
    """Mask every secret found in text."""
    if not text:
        return text
    env_re = _memo_env()
    if text in _clean:
        return text
    out = text
    if env_re is not None:
        out = env_re.sub(MASK, out)
    if _may_hold_shape(out):
        out = _Shapes.get()[0].sub(_replace_shape, out)
    if out == text and len(text) <= CLEAN_MEMO_LENGTH:
        if len(_clean) >= CLEAN_MEMO_ENTRIES:
            _clean.clear()
        _clean[text] = None
    return out


def redact(obj: Any) -> Any:
    """Redact every string inside a JSON-like structure (dicts, lists, strings).

    A value under a secret-looking key (`"api_key": "..."`, `"Authorization": "..."`) is
    masked whole, whatever it looks like.
    """
    if isinstance(obj, str):
        return redact_text(obj)
    if isinstance(obj, dict):
        return {k: (_redact_keyed(k, v)) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        _memo_env()
        return [_redact_item(v) for v in obj]
    return obj


def _redact_item(value: Any) -> Any:
    """An element of a list: a row of plain values already found clean is not scanned again —
    the very same list (a parser keeps its rows unchanged) is known by its identity, an equal
    one by its values. A clean row is returned as it is."""
    if type(value) is not list:
        return redact(value)
    if _clean_row_ids.get(id(value)) is value:
        return value
    try:
        row = tuple(value)
        known = row in _clean_rows
    except TypeError:  # it holds a dict or a list: no row
        return redact(value)
    if not known:
        out = redact(value)
        if out != value or sum(len(v) for v in value if type(v) is str) > CLEAN_MEMO_LENGTH:
            return out
        if len(_clean_rows) >= CLEAN_MEMO_ENTRIES:
            _clean_rows.clear()
        _clean_rows[row] = None
    if len(_clean_row_ids) >= CLEAN_MEMO_ENTRIES:
        _clean_row_ids.clear()
    _clean_row_ids[id(value)] = value  # held here, so its id names no other list meanwhile
    return value


def redact_all(items: list[Any]) -> list[Any]:
    """`[redact(x) for x in items]`, looking at the whole batch once first.

    The text of every string in the batch, joined, is scanned once: when it holds no secret
    value of the environment, no hint of any secret's shape (`_SHAPE_HINTS`, a superset of
    every shape's literal) and no value under a secret-looking key, no string in it does,
    and nothing is masked — the usual case, at the cost of one scan instead of one per
    string. Otherwise each item is looked at alone the same way, and redacted if it must be.
    The separator (NUL) is in no shape and in no environment value, so joining finds nothing
    that the strings alone would not."""
    texts: list[str] = []
    if _plain_strings(items, texts) and _clean_text(texts):
        return items
    out = []
    for item in items:
        texts = []
        out.append(item if _plain_strings(item, texts) and _clean_text(texts) else redact(item))
    return out


def _plain_strings(obj: Any, out: list[str]) -> bool:
    """Collect the strings in obj; False when one is a value under a secret-looking key."""
    if isinstance(obj, str):
        out.append(obj)
    elif isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(v, str):
                if len(v) >= 4 and isinstance(k, str) and _secret_key(k):
                    return False
                out.append(v)
            elif not _plain_strings(v, out):
                return False
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            if not _plain_strings(v, out):
                return False
    return True


def _clean_text(texts: list[str]) -> bool:
    """No secret value and no hint of a secret's shape in any of the texts."""
    if not texts:
        return True
    joined = "\x00".join(texts)
    env_re = _memo_env()
    if env_re is not None and env_re.search(joined):
        return False
    return not _may_hold_shape(joined)


_SECRET_KEY = rf"^(?i:{_KEY_NAMES}|authorization|proxy-authorization|cookie|set-cookie)$"


@lru_cache(maxsize=1024)
def _secret_key(key: str) -> bool:
    return re.match(_SECRET_KEY, key) is not None  # compiled once, on first use, by re's cache


def _redact_keyed(key: Any, value: Any) -> Any:
    if isinstance(value, str):
        if isinstance(key, str) and len(value) >= 4 and _secret_key(key):
            if "token" in key.lower() and value.replace(".", "").isdigit():
                return value
            return MASK
        return redact_text(value)
    return redact(value)


def redact_argv(argv: list[str]) -> list[str]:
    """Redact each argument of a command line (prompts may carry pasted secrets)."""
    return [redact_text(a) for a in argv]


def redact_env(env: Mapping[str, str]) -> dict[str, str]:
    """An environment with secret-looking variables' values masked (for records of a launch)."""
    return {k: (MASK if _SECRET_ENV_NAME.search(k) and k not in _NOT_SECRET_ENV and v
                and v.lower() not in _NOT_SECRET_VALUES else redact_text(v)) for k, v in env.items()}


def secret_spans(text: str) -> list[tuple[int, int]]:
    """Character spans of every secret in text (text decoded byte for byte, as latin-1), merged."""
    spans = []
    env_re = _current_env_regex(latin1=True)
    if env_re is not None:
        spans += [m.span() for m in env_re.finditer(text)]
    for m in _Shapes.get()[0].finditer(text) if _may_hold_shape(text) else ():
        if _replace_shape(m) == m.group(0):
            continue
        value_group, _ = _Shapes.get()[1].get(m.lastgroup or "", ("", None))
        spans.append(m.span(value_group) if value_group else m.span())
    merged: list[tuple[int, int]] = []
    for s, e in sorted(spans):  # the environment net and a shape may find the same secret
        if merged and s <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(e, merged[-1][1]))
        else:
            merged.append((s, e))
    return merged


#: How much of a long range is scanned at once by scrub_file, and how far each window
#: reaches back into the one before: more than the longest secret shape that must be seen
#: whole (a PEM private key is ~3.3 KB).
SCRUB_WINDOW = 1 << 20
SCRUB_OVERLAP = 16 << 10


def scrub_file(path: "os.PathLike[str] | str", start: int = 0, end: int | None = None) -> int:
    """Mask secrets in path[start:end] in place, byte for byte, a window at a time.

    Raw captures (an agent's stdout and stderr) are appended to by the CLI while orch reads
    them by byte offset: each secret becomes as many `*` as it had bytes, so no offset
    moves, and JSON lines stay JSON. The range is read in windows of SCRUB_WINDOW bytes,
    each reaching SCRUB_OVERLAP bytes back, so a line of any length costs bounded memory.
    Returns the number of secrets masked.
    """
    fd = os.open(path, os.O_RDWR)
    try:
        size = os.fstat(fd).st_size
        end = size if end is None else min(end, size)
        found, pos = 0, start
        while pos < end:
            back = max(start, pos - SCRUB_OVERLAP)
            stop = min(end, pos + SCRUB_WINDOW)
            found += len(_mask_spans(fd, back, os.pread(fd, stop - back, back)))
            pos = stop
        return found
    finally:
        os.close(fd)


def scrub_range(path: "os.PathLike[str] | str", start: int, data: bytes) -> int:
    """Mask secrets in the complete lines of a range the caller has just read (data = the bytes at start…)."""
    return len(_scrub_lines(path, start, data))


def _scrub_lines(path: "os.PathLike[str] | str", start: int, data: bytes) -> list[tuple[int, int]]:
    cut = data.rfind(b"\n")
    if cut < 0:
        return []
    text = data[: cut + 1].decode("latin-1")
    if not _may_hold_shape(text) and _current_env_regex(latin1=True) is None:
        return []  # nothing to look for: no file opened
    fd = os.open(path, os.O_RDWR)
    try:
        return _mask_spans(fd, start, data[: cut + 1])
    finally:
        os.close(fd)


def _mask_spans(fd: int, start: int, data: bytes) -> list[tuple[int, int]]:
    """Mask, in the file at fd, every secret of data (the bytes at `start`); the spans masked."""
    text = data.decode("latin-1")  # one char per byte: spans are byte offsets
    out = []
    for s, e in secret_spans(text):
        # Never leave half of a JSON escape behind: take its backslash too.
        while s > 0 and text[s - 1] == "\\" and (s < 2 or text[s - 2] != "\\"):
            s -= 1
        while e > s and text[e - 1] == "\\":
            e -= 1  # backslashes at its end escape what follows (`TOKEN\"`): kept, or the line breaks
        if e > s:
            os.pwrite(fd, b"*" * (e - s), start + s)
            out.append((s, e))
    return out


# What marks a *file* as holding a key (worktrees/hygiene.py): the self-identifying formats
# above (API keys and tokens of known providers, JWTs, private key blocks), each starting at
# a word boundary, and the longer values of this process's secret-looking variables. The
# `key = value` rules are left out here: in source code `token = get_token()` is no secret.
_CREDENTIAL = "|".join(f"(?<![A-Za-z0-9])(?:{s})" for s in _SHAPES if "(?P<" not in s)


def holds_credential(text: str) -> bool:
    """True when text holds a credential of a known format or a secret value of orch's environment."""
    if _may_hold_shape(text) and re.search(_CREDENTIAL, text):  # compiled on first use (re's cache)
        return True
    return any(v in text for v in secret_env_values() if len(v) >= 12)


def mask_occurrences(path: "os.PathLike[str] | str", start: int, end: int, needles: list[bytes]) -> int:
    """Mask every copy of the needles (longest first) in path[start:end], in place; how many were masked."""
    needles = [n for n in needles if n]
    if not needles or end <= start:
        return 0
    reach = max(map(len, needles)) - 1
    found = 0
    fd = os.open(path, os.O_RDWR)
    try:
        pos = start
        while pos < end:
            back = max(start, pos - reach)
            stop = min(end, pos + SCRUB_WINDOW)
            data = bytearray(os.pread(fd, stop - back, back))
            for needle in needles:
                i = data.find(needle)
                while i >= 0:
                    data[i:i + len(needle)] = b"*" * len(needle)
                    os.pwrite(fd, b"*" * len(needle), back + i)
                    found += 1
                    i = data.find(needle, i + len(needle))
            pos = stop
        return found
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- a secret still being written

# What a secret looks like before its end has arrived: its distinctive start (a known
# prefix, a Bearer or Authorization header, a secret-looking key and its separator), then
# at least one character of the secret itself, reaching the end of the text. Each entry:
# (pattern, the group to mask or "" for the whole match, what can continue it — the
# `open` kinds of runtime/ingest/split.py). Only starts that say "a secret follows" are
# here: a bare word may be the start of a key name, but holding every word back would
# hold all text.
_OPENINGS = [
    (r"(?<![A-Za-z0-9])(?:sk-|(?:sk|rk|pk)_(?:live|test)_|AIza|gh[pousr]_|github_pat_|glpat-|hf_|npm_"
     r"|xox[abposr]-|AKIA|ASIA)[A-Za-z0-9_\-]+", "", "word"),
    (r"(?<![A-Za-z0-9])(?:ya29\.|eyJ)[A-Za-z0-9_\-.]+", "", "token"),
    (r"(?i:\bbearer\s+)(?P<V>[A-Za-z0-9._~+/\-]+=*)", "V", "token"),
    (r"(?i:\b(?:proxy-)?authorization\b[\"']?\s*[:=]\s*[\"']?(?:(?:bearer|basic|token|digest|bot)\s+)?)"
     r"(?P<V>[^\s\"',;]+)", "V", "token"),
    (rf"(?<![A-Za-z0-9])(?P<K>(?i:{_KEY_NAMES}))[\"']?\s*[:=]\s*[\"'](?P<V>[^\"'\n]+)", "V", "quoted"),
    (rf"(?<![A-Za-z0-9])(?P<K>(?i:{_KEY_NAMES}))[\"']?\s*[:=]\s*(?P<V>[^\s\"',;}}]+)", "V", "token"),
]
@lru_cache(maxsize=1)
def _opening_res() -> list:
    """The openings' regular expressions, compiled on first use."""
    return [(re.compile(f"(?:{p})\\Z"), g, kind) for p, g, kind in _OPENINGS]
#: How far back from the end of the text an unfinished secret is looked for: every
#: shape above is a whole secret long before this many characters.
OPENING_REACH = 512
#: The shortest start of a secret environment value that counts as one (shorter starts
#: are ordinary text too often).
ENV_OPENING_MIN = 6


def open_secret_at_end(text: str, spans: list[tuple[int, int]] = ()) -> tuple[int, str] | None:
    """Where an unfinished secret starts that reaches the end of text (decoded byte for
    byte), and what can continue it ("word", "token", "quoted"); None if there is none.

    `spans` are the secrets already found in text: a start inside one of them is not
    unfinished (it was masked whole). The earliest such start wins.
    """
    if not text:
        return None
    base = max(0, len(text) - OPENING_REACH)
    window = text[base:]
    found: tuple[int, str] | None = None
    # Every opening holds a shape's hint: without one, its six searches (each tried at every
    # position of the window, for \Z) find nothing.
    for regex, group, kind in _opening_res() if _may_hold_shape(window) else ():
        m = regex.search(window)
        if m is None:
            continue
        if group and m.groupdict().get("K") and "token" in m.group("K").lower() \
                and m.group(group).replace(".", "").isdigit():
            continue  # a token count (input_tokens: 12), not a token
        start = base + (m.start(group) if group else m.start())
        if found is None or start < found[0]:
            found = (start, kind)
    for value in _env_values_latin1():
        for k in range(min(len(value) - 1, len(text)), ENV_OPENING_MIN - 1, -1):
            if text.endswith(value[:k]):
                start = len(text) - k
                if found is None or start < found[0]:
                    found = (start, "token")
                break
    if found is None:
        return None
    inside = [e for _, e in spans if e > found[0]]  # secrets found whole within it: masked already
    if inside:
        if max(inside) >= len(text):
            return None  # one reaches the end: masked, and what continues it will be (split.py's `open`)
        found = (max(inside), found[1])
    return found


def _env_values_latin1() -> tuple[str, ...]:
    """secret_env_values, each as text decoded byte for byte, once per state of the environment."""
    data = getattr(os.environ, "_data", None)
    key = hash(frozenset(data.items())) if isinstance(data, dict) else None
    if key is None:
        return tuple(v.encode("utf-8", "replace").decode("latin-1") for v in secret_env_values())
    return _env_values_for(key)


@lru_cache(maxsize=8)
def _env_values_for(fingerprint: int) -> tuple[str, ...]:
    return tuple(v.encode("utf-8", "replace").decode("latin-1") for v in secret_env_values())

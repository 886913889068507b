"""The toolkit the CLI stream parsers are built from.

Fast, forgiving decoding of one raw line; bounded memory for everything a parser keeps
between lines (its state is saved as JSON after every batch, so it must stay small); and
the one place where a line that breaks a handler becomes a counted malformed line
instead of an exception.
"""

from __future__ import annotations

import json
from typing import Any, Iterable, Optional

from ..core.models import AgentEvent, AgentEventKind
from . import limits
from .base import StreamParser

#: Longest assistant text kept in one event or in parser state (the tail is kept: a
#: final answer or verdict usually ends a message).
MAX_TEXT = 200_000
#: Longest tool target, error or denial message kept.
MAX_MESSAGE = 2_000
#: An unknown line carries its raw object when it is at most this long.
MAX_RAW_UNKNOWN = 4_096
#: How many tool calls (id -> name, target) a parser remembers, and how much of each
#: target: with the text limits below this keeps a saved parser state under ~1 MB.
MAX_TRACKED = 256
MAX_TRACKED_TARGET = 500
#: How many error lines from stderr one run may add (a crash loop must not flood).
MAX_STDERR_ERRORS = 20

K = AgentEventKind


_scan_once = json.JSONDecoder().scan_once
# The model's own validator called with a dict: the same checks as AgentEvent(...), a
# third cheaper (measured: model_construct is slower still, being pure Python).
_validate_event = AgentEvent.__pydantic_validator__.validate_python


def loads(text: str) -> Any:
    """json.loads for one line, without its per-call overhead (ValueError when not JSON)."""
    try:
        obj, end = _scan_once(text, 0)
    except StopIteration:
        return json.loads(text)  # leading whitespace, or no JSON value at all: the exact path
    if end != len(text) and not text[end:].isspace():
        raise ValueError(f"extra data after the JSON value at {end}")
    return obj


def clip(text: Any, limit: int = MAX_MESSAGE) -> Optional[str]:
    """A string no longer than limit (None stays None; other values become strings)."""
    if text is None:
        return None
    if not isinstance(text, str):
        text = str(text)
    if len(text) <= limit:
        return text
    return text[: limit - 1] + "…"


def clip_tail(text: str, limit: int = MAX_TEXT) -> str:
    """The last `limit` characters of text, marked when something was cut."""
    if len(text) <= limit:
        return text
    return "…" + text[-(limit - 1):]


def as_int(value: Any) -> int:
    """An int from a loosely-typed JSON value (anything odd counts as zero)."""
    if type(value) is int:
        return value
    try:
        return int(value or 0)
    except (TypeError, ValueError, OverflowError):
        return 0


def as_float(value: Any) -> float:
    """A float from a loosely-typed JSON value (anything odd counts as zero)."""
    if type(value) is float:
        return value
    try:
        result = float(value or 0.0)
    except (TypeError, ValueError, OverflowError):
        return 0.0
    return result if result == result and result not in (float("inf"), float("-inf")) else 0.0


def text_of(content: Any) -> str:
    """The text of a tool result's content: a string, or a list of {type: text} parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text") for p in content if isinstance(p, dict)]
        return "\n".join(p for p in parts if isinstance(p, str))
    if content is None:
        return ""
    return str(content)


def mentions(text: str, markers: Iterable[str]) -> bool:
    """True when the head of text holds one of the (lower-case) markers, in any case:
    how a CLI's wording of a refusal is told from other errors."""
    low = text[:MAX_MESSAGE * 4].lower()
    return any(marker in low for marker in markers)


def message_content(obj: dict[str, Any]) -> Optional[list[Any]]:
    """The content blocks of a Claude Code-shaped assistant/user line, None when it has none."""
    message = obj.get("message")
    content = message.get("content") if isinstance(message, dict) else None
    return content if isinstance(content, list) else None


class CallMemory:
    """Tool calls still running, id -> (tool name, target): a call is forgotten when its result
    comes (`finish`), and the oldest beyond a limit (results that never came).

    Each call is kept as its saved row, [id, tool, target], never changed once made: the
    state a batch saves shares them, so redacting and writing it again next batch finds the
    rows it has already seen (safety/redaction.py keeps clean rows by identity)."""

    def __init__(self, saved: Any = None, limit: int = MAX_TRACKED):
        self.limit = limit
        self.calls: dict[str, list[Optional[str]]] = {}
        if isinstance(saved, list):
            calls = self.calls
            for entry in saved[-limit:]:
                if type(entry) is list and len(entry) == 3:
                    call_id, tool, target = entry
                    if type(call_id) is str and (tool is None or type(tool) is str) \
                            and (target is None or type(target) is str):
                        calls[call_id] = entry

    def put(self, call_id: str, tool: Optional[str], target: Optional[str]) -> None:
        """Remember a call (its target clipped: it is kept in the saved state)."""
        calls = self.calls
        calls.pop(call_id, None)
        calls[call_id] = [call_id, tool, clip(target, MAX_TRACKED_TARGET)]
        if len(calls) > self.limit:
            del calls[next(iter(calls))]

    def get(self, call_id: Any) -> tuple[Optional[str], Optional[str]]:
        """(tool, target) of a call, or (None, None) for an id never seen."""
        if isinstance(call_id, str):
            row = self.calls.get(call_id)
            if row is not None:
                return row[1], row[2]
        return (None, None)

    def finish(self, call_id: Any) -> tuple[Optional[str], Optional[str]]:
        """(tool, target) of a call whose result has come, forgotten: nothing refers to it
        after its result, and the saved state (in every meta.json write, and read by every
        read command) holds only the calls still running — not the last MAX_TRACKED."""
        if isinstance(call_id, str):
            row = self.calls.pop(call_id, None)
            if row is not None:
                return row[1], row[2]
        return (None, None)

    def dump(self) -> list[list[Optional[str]]]:
        """JSON form: [id, tool, target] triples, oldest first."""
        return list(self.calls.values())


def string_list(value: Any, limit: int = MAX_TRACKED) -> list[str]:
    """The strings of a saved list (anything else is dropped), at most `limit`, newest kept."""
    if not isinstance(value, list):
        return []
    return [v for v in value if isinstance(v, str)][-limit:]


class JsonLineParser(StreamParser):
    """A StreamParser for a CLI whose stdout is one JSON object per line.

    Subclasses implement `on_stdout(obj)`, and `on_stderr(text)` / `on_rollout(obj)` when
    those streams carry anything. A handler that trips over an odd shape never raises:
    the line is counted in `malformed_lines` and parsing goes on.
    """

    #: stdout line type -> handler(parser, obj), looked up once per line (the hot path);
    #: types not in it go to on_stdout.
    stdout_handlers: dict[str, Any] = {}

    def __init__(self, state: Optional[dict[str, Any]] = None):
        self._stream = "stdout"
        self._line_len = 0
        super().__init__(state)

    # ---- state: subclasses extend both and call super()
    def load_state(self, state: dict[str, Any]) -> None:
        state = state if isinstance(state, dict) else {}
        self.malformed_lines = max(0, as_int(state.get("malformed_lines")))
        self.finished = state.get("finished") is True
        session_id = state.get("session_id")
        self.session_id = session_id if isinstance(session_id, str) else None
        self.stderr_errors = max(0, as_int(state.get("stderr_errors")))
        self.limit_reported = state.get("limit_reported") is True  # this run's LIMIT_HIT is out
        model = state.get("model")
        self.model = model if isinstance(model, str) else None  # the model the run uses, once named

    def state(self) -> dict[str, Any]:
        return {
            "malformed_lines": self.malformed_lines,
            "finished": self.finished,
            "session_id": self.session_id,
            "stderr_errors": self.stderr_errors,
            "limit_reported": self.limit_reported,
            "model": self.model,
        }

    # ---- the one entry point
    def feed(self, stream: str, line: bytes) -> list[AgentEvent]:
        """Normalize one complete raw line; never raises."""
        self._stream = stream
        self._line_len = len(line)
        self.spoken = []
        try:
            if stream == "stdout":
                # Fast path for the common case, a clean JSON object on its own line;
                # anything else takes _decode, which does the counting.
                try:
                    text = line.decode("utf-8")
                    obj, end = _scan_once(text, 0)
                except (ValueError, StopIteration, RecursionError):
                    obj, end, text = None, 0, ""
                if type(obj) is not dict or (end != len(text) and not text[end:].isspace()):
                    obj = self._decode(line)
                    if obj is None:
                        return []
                kind = obj.get("type")
                handler = self.stdout_handlers.get(kind) if type(kind) is str else None
                return handler(self, obj) if handler is not None else self.on_stdout(obj)
            if stream == "stderr":
                text = line.decode("utf-8", errors="replace").strip()
                return self.on_stderr(text) if text else []
            if stream == "rollout":
                obj = self._decode(line)
                return self.on_rollout(obj) if obj is not None else []
        except Exception:  # an odd shape no handler foresaw: count it, keep going
            self.malformed_lines += 1
        return []

    def _decode(self, line: bytes) -> Optional[dict[str, Any]]:
        if not line or line.isspace():
            return None
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            # Not UTF-8: count it, then salvage what the replacement characters allow.
            self.malformed_lines += 1
            try:
                obj = loads(line.decode("utf-8", errors="replace"))
            except (ValueError, RecursionError):
                return None
            return obj if type(obj) is dict else None
        try:
            obj = loads(text)
        except (ValueError, RecursionError):
            self.malformed_lines += 1
            return None
        if type(obj) is not dict:
            self.malformed_lines += 1
            return None
        return obj

    # ---- handlers
    def on_stdout(self, obj: dict[str, Any]) -> list[AgentEvent]:
        return [self.unknown(obj)]

    def on_stderr(self, text: str) -> list[AgentEvent]:
        return []

    def on_rollout(self, obj: dict[str, Any]) -> list[AgentEvent]:
        return []

    # ---- event helpers shared by every parser
    def say(self, text: Any) -> None:
        """Note text the model wrote, exactly as this line carries it (see StreamParser.spoken)."""
        if isinstance(text, str) and text:
            self.spoken.append(text)

    def event(self, kind: AgentEventKind, **fields: Any) -> AgentEvent:
        """An AgentEvent from the stream being read (validated, by the fastest entry)."""
        fields["kind"] = kind
        fields["stream"] = self._stream
        return _validate_event(fields)

    def run_finished(self, outcome: Any, text: Optional[str], usage: Any = None, cumulative: bool = False,
                     **fields: Any) -> list[AgentEvent]:
        """The end of a run: its usage (when known), then RUN_FINISHED; marks the run finished."""
        self.finished = True
        events = []
        if usage is not None:
            events.append(self.event(K.USAGE, usage=usage, usage_cumulative=cumulative))
            fields.update(usage=usage, usage_cumulative=cumulative)
        events.append(self.event(K.RUN_FINISHED, outcome=outcome, text=text, session_id=self.session_id, **fields))
        return events

    def unknown(self, obj: dict[str, Any], raw_type: Any = None) -> AgentEvent:
        """An UNKNOWN event that keeps the line (or, for a long line, its keys)."""
        if raw_type is None:
            raw_type = obj.get("type")
        raw_type = clip(raw_type, 200) if raw_type is not None else "(none)"
        data = obj if self._line_len <= MAX_RAW_UNKNOWN else {"keys": [clip(k, 100) for k in list(obj)[:50]]}
        return self.event(K.UNKNOWN, raw_type=raw_type, data=data)

    def session_started(self, session_id: Any, data: Optional[dict[str, Any]] = None) -> list[AgentEvent]:
        """SESSION_STARTED for a new id (the same id seen again gives nothing)."""
        if not isinstance(session_id, str) or not session_id or session_id == self.session_id:
            return []
        self.session_id = clip(session_id, 200)
        return [self.event(K.SESSION_STARTED, session_id=self.session_id, data=data)]

    def limit_hit(self, kind: Optional[str], scope: Optional[str], resets_at: Any, message: Any,
                  data: Optional[dict[str, Any]] = None) -> list[AgentEvent]:
        """LIMIT_HIT, once per run however many lines (and streams) say it; a refusal whose words
        say the account is out of credit is of kind billing, whatever status carried it."""
        if self.limit_reported:
            return []
        self.limit_reported = True
        if kind != limits.USAGE and isinstance(message, str) and limits.is_billing_text(message):
            kind, scope, resets_at = limits.BILLING, None, None
        return [self.event(K.LIMIT_HIT, limit_kind=kind, limit_scope=scope, resets_at=resets_at,
                           message=clip(message), data=data)]

    def limit_warning(self, kind: Optional[str], scope: Optional[str], resets_at: Any, message: Any,
                      data: Optional[dict[str, Any]] = None) -> list[AgentEvent]:
        """LIMIT_WARNING: close to a limit (or past it on extra usage); the run goes on."""
        return [self.event(K.LIMIT_WARNING, limit_kind=kind, limit_scope=scope, resets_at=resets_at,
                           message=clip(message), data=data)]

    def stderr_error(self, message: str) -> list[AgentEvent]:
        """An ERROR from a stderr line, at most MAX_STDERR_ERRORS per run."""
        if self.stderr_errors >= MAX_STDERR_ERRORS:
            return []
        self.stderr_errors += 1
        return [self.event(K.ERROR, message=clip(message))]

    def finish(self, exit_code: Optional[int]) -> list[AgentEvent]:
        """A RUN_FINISHED with outcome incomplete when the stream never ended itself."""
        events = self.flush()
        if not self.finished:
            self.finished = True
            note = "the stream ended without a terminal event"
            if exit_code is not None:
                note += f" (exit code {exit_code})"
            events.append(AgentEvent(kind=K.RUN_FINISHED, stream="exit", outcome="incomplete",
                                     message=note, session_id=self.session_id))
        return events

    def flush(self) -> list[AgentEvent]:
        """Events held back while waiting for more lines (e.g. text deltas)."""
        return []


def first_string(mapping: dict[str, Any], keys: Iterable[str]) -> Optional[str]:
    """The first non-empty string value among keys of a mapping."""
    for key in keys:
        value = mapping.get(key)
        if isinstance(value, str) and value:
            return value
    return None

"""Normalize a capture (stdout, stderr, exit code) and say exactly where two of them differ.

A capture is read twice over: raw, as the sequence of its stdout line shapes (type plus
subtype, role, item or block types; runs of the same shape, such as streamed text deltas,
count once; lines a CLI marks `"ephemeral": true` — Copilot's progress — not at all), and
through orch's adapter for its CLI, as the run summary and the sequence
of normalized events. Ids, timestamps, ports, durations and other numbers are masked;
the structure is not. `differences` names the first line or event that changed.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
PREFIXED_ID = re.compile(r"\b(?:toolu|msg|call|fc|ctc|resp|req|item|ses|prt)_[A-Za-z0-9]+")
# A decimal fraction is one number: codex prints a wall time as "0" or "0.1" depending on
# how long the call took, which is timing, not format.
NUMBER = re.compile(r"(?<![A-Za-z0-9])[0-9a-fA-F]*[0-9][0-9a-fA-F]*(?:\.[0-9]+)?(?![A-Za-z0-9])")
RC_LINE = re.compile(r"^# rc=(-?\d+)", re.M)
# A clock time as the CLIs word a limit's reset ("4:22pm", "9am", "Dec 5, 2:23pm",
# "Jan 5, 2027, 9am", "Dec 5th, 2026 2:23 PM"): when the run happened, not format.
# codex's exec output names its chunk by a random hex id, which may hold no digit at all ("dbccfb").
CHUNK_ID = re.compile(r"(Chunk ID: )[0-9a-f]+\b")
CLOCK = re.compile(r"(?:\b[A-Z][a-z]{2} \d{1,2}(?:st|nd|rd|th)?,(?: \d{4},?)? )?\b\d{1,2}(?::\d{2})? ?[AaPp][Mm]\b")


def mask(text: Optional[str]) -> Optional[str]:
    """Text with ids, numbers (hex included), clock times and uuids replaced by placeholders."""
    if text is None:
        return None
    text = CHUNK_ID.sub(r"\g<1>#", text)
    return NUMBER.sub("#", CLOCK.sub("<time>", PREFIXED_ID.sub("<id>", UUID.sub("<uuid>", text))))


@dataclass
class Capture:
    name: str
    stdout: bytes
    stderr: bytes
    returncode: Optional[int]

    @classmethod
    def load(cls, base: Path) -> "Capture":
        """`<base>.jsonl`, `.stderr` and the `# rc=N` line of `.cmd`."""
        cmd = Path(f"{base}.cmd")
        found = RC_LINE.search(cmd.read_text()) if cmd.exists() else None
        return cls(base.name, Path(f"{base}.jsonl").read_bytes(), Path(f"{base}.stderr").read_bytes(),
                   int(found.group(1)) if found else None)


def line_shape(obj: Any) -> str:
    """The structural name of one stdout line: `assistant/tool_use`, `item.completed/agent_message`, …"""
    if not isinstance(obj, dict):
        return "<not an object>"
    parts = [str(obj.get("type", "<no type>"))]
    for key in ("subtype", "role"):
        if isinstance(obj.get(key), str):
            parts.append(obj[key])
    item = obj.get("item")
    if isinstance(item, dict):
        parts.append(str(item.get("type")))
    message = obj.get("message")
    if isinstance(message, dict) and isinstance(message.get("content"), list):
        parts.append(",".join(str(b.get("type")) for b in message["content"] if isinstance(b, dict)))
    event = obj.get("event")
    if isinstance(event, dict):
        parts.append(str(event.get("type")))
        delta = event.get("delta")
        if isinstance(delta, dict) and "type" in delta:
            parts.append(str(delta["type"]))
    return "/".join(parts)


@dataclass
class Step:
    """One entry of a normalized sequence, with where it came from."""

    label: str
    origin: str

    def __str__(self) -> str:
        return f"{self.label}  (from {self.origin})"


def raw_shapes(capture: Capture) -> list[Step]:
    steps: list[Step] = []
    for number, raw in enumerate(capture.stdout.splitlines(), 1):
        try:
            obj = json.loads(raw)
        except ValueError:
            obj, shape = None, "<not JSON>"
        if isinstance(obj, dict) and obj.get("ephemeral") is True:
            continue  # Copilot's progress events: how many, and in which order, is timing, not format
        if obj is not None:
            shape = line_shape(obj)
        if steps and steps[-1].label == shape:
            continue
        steps.append(Step(shape, f"stdout line {number}"))
    return steps


def event_label(event: Any) -> str:
    label = event.kind.value
    details = []
    for name in ("tool", "ok", "change", "outcome", "status"):
        value = getattr(event, name, None)
        if value is not None:
            details.append(f"{name}={getattr(value, 'value', value)}")
    for name in ("target", "path"):
        value = getattr(event, name, None)
        if value is not None:
            details.append(f"{name}={mask(value)}")
    return f"{event.stream}:{label}" + (f"[{' '.join(details)}]" if details else "")


@dataclass
class Normalized:
    summary: dict[str, Any]
    events: list[Step]
    shapes: list[Step]
    returncode: Optional[int]


def normalize(cli: str, capture: Capture) -> Normalized:
    """The capture through orch's adapter for `cli`, with everything incidental masked."""
    from orchestrator.adapters import get_adapter, summarize

    parser = get_adapter(cli).new_parser()
    events: list[Step] = []
    collected = []
    # stdout first, then stderr: the files do not record how the two interleaved.
    for stream, data in (("stdout", capture.stdout), ("stderr", capture.stderr)):
        for number, raw in enumerate(data.splitlines(), 1):
            for event in parser.feed(stream, raw):
                collected.append(event)
                label = event_label(event)
                # streamed text arrives in pieces whose size is the model's choice, not the CLI's
                if events and label == events[-1].label and event.kind.value == "text":
                    continue
                events.append(Step(label, f"{stream} line {number}"))
    for event in parser.finish(capture.returncode):
        collected.append(event)
        events.append(Step(event_label(event), "end of run"))
    s = summarize(cli, collected, parser.malformed_lines)
    summary = {
        "session id": mask(s.session_id),
        "outcome": s.outcome.value,
        "denied": s.denied,
        "denials": [(d.tool, mask(d.target)) for d in s.denials],
        "tool calls": s.tool_calls,
        "files changed": [mask(p) for p in s.files_changed],
        "final text": mask(s.final_text),
        "errors": [mask(e) for e in s.errors],
        "unknown events": s.unknown_events,
        "malformed lines": s.malformed_lines,
    }
    return Normalized(summary, events, raw_shapes(capture), capture.returncode)


def first_difference(kind: str, committed: list[Step], fresh: list[Step]) -> Optional[str]:
    for i, (a, b) in enumerate(zip(committed, fresh)):
        if a.label != b.label:
            return (f"{kind} #{i + 1} changed:\n    committed: {a}\n    fresh:     {b}")
    if len(committed) != len(fresh):
        longer, which = (committed, "committed") if len(committed) > len(fresh) else (fresh, "fresh")
        extra = longer[min(len(committed), len(fresh))]
        return (f"{kind}: the {which} capture has {abs(len(committed) - len(fresh))} more, "
                f"starting with #{min(len(committed), len(fresh)) + 1}: {extra}")
    return None


def differences(committed: Normalized, fresh: Normalized) -> list[str]:
    """Every way the fresh capture departs from the committed one (empty when none)."""
    found = []
    if committed.returncode != fresh.returncode:
        found.append(f"exit code: committed {committed.returncode}, fresh {fresh.returncode}")
    for key, value in committed.summary.items():
        if fresh.summary.get(key) != value:
            found.append(f"{key}: committed {value!r}, fresh {fresh.summary.get(key)!r}")
    for kind, a, b in (("raw stdout line shape", committed.shapes, fresh.shapes),
                       ("normalized event", committed.events, fresh.events)):
        diff = first_difference(kind, a, b)
        if diff:
            found.append(diff)
    return found

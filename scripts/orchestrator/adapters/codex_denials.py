"""How codex shows a refused action, and counting each refused action once.

Codex never reports a denial as an event of its own. The refusal is text: in what the
tool returned (rollout file, a failed item's output), in the model's later message, and
for a refusal its tool handlers answer before anything runs (a rejected patch, an
escalation under approval `never`, an exec-policy rule) in a stderr router line.
`classify` reads that text; `DenialLedger` reconciles the sources: per kind of refusal,
the number of denials is the largest number any one source shows, so the stderr line and
the later message about the same patch are one denial, while two refused patches stay two.

The literals are codex 0.169.0's own (specifications/CLI_PERMISSIONS_SPEC.md, section 3,
lists each with the handler it comes from, whether it is reachable headless and the rung
it needs).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Optional

from ..core.models import AgentEvent, Permission
from .streams import MAX_TRACKED, K, as_int, clip, string_list

if TYPE_CHECKING:
    from .streams import JsonLineParser

#: (lower-case marker, kind), most specific first. The markers are codex's own literals
#: (the refusals its tool handlers send back to the model before anything runs) and the
#: errors a sandboxed process gets from the kernel.
MARKERS = (
    ("patch rejected: writing is blocked by read-only sandbox", "patch_read_only"),
    ("patch rejected: writing outside of the project", "patch_outside"),
    ("patch rejected by user", "patch_rejected"),
    # exec_command asked to leave the sandbox (require_escalated or with_additional_permissions)
    ("you cannot ask for escalated permissions", "escalation_refused"),
    ("you cannot request additional permissions", "escalation_refused"),
    ("additional permissions are disabled", "escalation_refused"),
    # exec policy: a forbidden rule, the built-in rm -f check, a dangerous command
    ("rejected: blocked by policy", "blocked_by_policy"),
    ("rejected: policy forbids commands starting with", "blocked_by_policy"),
    ("rejected: rm -f style commands are not permitted", "blocked_by_policy"),
    ("blocked by pretooluse hook", "blocked_by_policy"),
    # exec policy: a `prompt` rule (or a prompt the granular policy refuses) with no one to ask
    ("approval required by policy", "approval_required"),
    ("exec command rejected by user", "approval_rejected"),
    ("write_stdin rejected", "approval_rejected"),
    ("rejected by user approval settings", "approval_rejected"),
    ("sandbox denied", "sandbox_denied"),
    ("read-only file system", "read_only_fs"),
    ("operation not permitted", "not_permitted"),
    ("network is unreachable", "network"),
    ("could not resolve host", "network"),
    ("temporary failure in name resolution", "network"),
)

#: The lowest level whose rung lets each kind of refused action through.
_LEVELS = {
    "patch_read_only": Permission.EDIT,
    "patch_rejected": Permission.EDIT,
    "read_only_fs": Permission.EDIT,
    "not_permitted": Permission.EDIT,
    "sandbox_denied": Permission.EDIT,
    "declined": Permission.EDIT,
    "patch_outside": Permission.FULL,  # outside the writable roots: full re-opens /tmp, the bypass the rest
    "escalation_refused": Permission.FULL,  # the command asked to run outside the sandbox
    # Refused by codex's exec policy at every rung, the bypass included: full is the top,
    # so the ladder climbs there and stops (a rung cannot lift a rule).
    "blocked_by_policy": Permission.FULL,
    "approval_required": Permission.FULL,
    "approval_rejected": Permission.FULL,
    "network": Permission.FULL,
}

_PATH_BEFORE = re.compile(r"([^\s:]+):\s*(?:read-only file system|operation not permitted)", re.IGNORECASE)
_BACKTICKED = re.compile(r"`([^`]{1,2000})`")
#: An exec-policy refusal whose reason is the rule's own justification (free text):
#: "`CMD` rejected: <justification>", as codex's derive_forbidden_reason words it.
_RULE_REJECTED = re.compile(r"`([^`\n]{1,2000})` rejected: ")
_PATCH_FILE = re.compile(r"^\*\*\* (?:Add|Update|Delete) File: (.+)$|^\*\*\* Move to: (.+)$", re.MULTILINE)


#: Case-sensitive fragments, one of which every marker contains (its first letter left
#: out, so "Read-only" and "read-only" both match): a few plain substring scans are far
#: cheaper than a case-insensitive regex over every message.
_QUICK = ("rejected", "ead-only", "not permitted", "andbox denied", "nreachable", "esolve host", "ame resolution",
          "scalated permissions", "dditional permissions", "pproval required by policy", "reToolUse hook")


def classify(text: str) -> list[tuple[str, Optional[str], str]]:
    """Every kind of refusal the text reports, as (kind, target or None, snippet)."""
    for fragment in _QUICK:
        if fragment in text:
            break
    else:
        return []  # the usual case
    low = text.lower()
    found: list[tuple[str, Optional[str], str]] = []
    kinds: set[str] = set()
    for marker, kind in MARKERS:
        at = low.find(marker)
        if at < 0 or kind in kinds:
            continue
        kinds.add(kind)
        snippet = text[max(0, at - 200): at + len(marker) + 120]
        target = _target(kind, snippet)
        if kind == "blocked_by_policy":  # the whole command, however long: "`CMD` rejected: …"
            rule = _RULE_REJECTED.search(text)
            target = clip(rule.group(1)) if rule else target
        found.append((kind, target, snippet.strip()))
    if "blocked_by_policy" not in kinds:
        rule = _RULE_REJECTED.search(text)
        if rule:  # a forbidden rule with a justification of its own
            at = rule.start()
            snippet = text[max(0, at - 200): rule.end() + 200]
            found.append(("blocked_by_policy", clip(rule.group(1)), snippet.strip()))
            kinds.add("blocked_by_policy")
    if "approval_rejected" in kinds and kinds & {"patch_read_only", "patch_outside"}:
        # "patch rejected: …; rejected by user approval settings" is one refusal.
        found = [f for f in found if f[0] != "approval_rejected"]
    return found


def _target(kind: str, snippet: str) -> Optional[str]:
    if kind in ("read_only_fs", "not_permitted"):
        matches = _PATH_BEFORE.findall(snippet)
        if matches:
            path = matches[-1].strip("'\"`")
            return clip(path) if path else None
    elif kind in ("blocked_by_policy", "approval_rejected"):
        match = _BACKTICKED.search(snippet)
        if match:
            return clip(match.group(1))
    return None


def kind_level(kind: str) -> Permission:
    """The lowest permission level that lets this kind of refused action through."""
    return _LEVELS.get(kind, Permission.FULL)


def kind_tool(kind: str) -> str:
    """The tool a refusal of this kind came from, when the source does not say."""
    return "apply_patch" if kind.startswith("patch") else "shell"


def patch_targets(patch: str) -> list[str]:
    """The files an apply_patch text touches (at most 20)."""
    paths = []
    for added, moved in _PATCH_FILE.findall(patch[:200_000]):
        path = (added or moved).strip()
        if path and path not in paths:
            paths.append(path)
        if len(paths) >= 20:
            break
    return paths


class DenialLedger:
    """Counts refusals per kind and per source; a DENIAL is emitted only past the maximum."""

    SOURCES = ("text", "stderr", "item", "rollout")

    def __init__(self, saved: Any = None):
        saved = saved if isinstance(saved, dict) else {}
        counts = saved.get("counts") if isinstance(saved.get("counts"), dict) else {}
        self.counts: dict[str, dict[str, int]] = {}
        for kind, per_source in counts.items():
            if kind in _LEVELS and isinstance(per_source, dict):
                self.counts[kind] = {s: max(0, as_int(per_source.get(s))) for s in self.SOURCES if s in per_source}
        emitted = saved.get("emitted") if isinstance(saved.get("emitted"), dict) else {}
        self.emitted = {k: max(0, as_int(v)) for k, v in emitted.items() if k in _LEVELS}
        self.seen = string_list(saved.get("seen"))

    def observe(self, parser: "JsonLineParser", kind: str, source: str, tool: Optional[str],
                target: Optional[str], message: str, tool_id: Optional[str] = None) -> list[AgentEvent]:
        """Record one sighting; a DENIAL event when it is a refused action not yet reported."""
        if source == "text":
            key = f"text|{kind}|{target or ''}"  # the model may mention one refusal twice
        elif tool_id is not None:
            key = f"{source}|{kind}|{tool_id}"
        else:
            key = None
        if key is not None:
            if key in self.seen:
                return []
            self.seen.append(key)
            if len(self.seen) > MAX_TRACKED:
                del self.seen[0]
        per_source = self.counts.setdefault(kind, {})
        count = per_source.get(source, 0) + 1
        per_source[source] = count
        if count <= self.emitted.get(kind, 0):
            return []  # another source already reported this action
        self.emitted[kind] = count
        return [parser.event(K.DENIAL, tool=tool or kind_tool(kind), target=clip(target),
                             message=clip(message) or kind, tool_id=tool_id or f"codex-{kind}-{count}")]

    def dump(self) -> dict[str, Any]:
        """JSON form of the ledger (a handful of kinds, a bounded list of seen keys)."""
        return {"counts": {kind: dict(per_source) for kind, per_source in self.counts.items()},
                "emitted": dict(self.emitted), "seen": list(self.seen)}

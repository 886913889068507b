"""What the sim team builds: a tiny Python package whose spec the sim architect writes.

Each requirement carries the correct code, a hasty first-pass version that misses its edge
case (the sim implementer's one oversight per component), and executable examples the
sim reviewer really runs. So the review finds genuine defects, and a fix is genuinely
verified.

The architect also writes the package's `__init__.py` with its `__version__` and a test of
it. The implementer of the `core` component exposes its functions at the package's top
level and, in a hurry, rewrites `__init__.py` without `__version__`: its merge breaks a test
another agent wrote, which the verification gate catches and blames on that merge, and the
implementer's fix (REPAIRS) brings it back. Deterministic: only `core` touches the file.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Requirement:
    name: str
    signature: str
    summary: str
    code: str
    hasty: str
    examples: tuple[str, ...]  # "expr == value"
    edge: str  # "expr raises ExcType"
    imports: str = ""


CATALOG: tuple[Requirement, ...] = (
    Requirement(
        "slugify", "slugify(text: str) -> str",
        'lower-case words of letters and digits joined by "-"; raises ValueError when nothing is left',
        'def slugify(text: str) -> str:\n    words = re.findall(r"[a-z0-9]+", text.lower())\n'
        '    if not words:\n        raise ValueError("nothing to slugify")\n    return "-".join(words)\n',
        'def slugify(text: str) -> str:\n    words = re.findall(r"[a-z0-9]+", text.lower())\n'
        '    return "-".join(words)\n',
        ('slugify("Hello, World!") == "hello-world"', 'slugify("  Orch 2 go ") == "orch-2-go"'),
        'slugify("!!!") raises ValueError', imports="import re",
    ),
    Requirement(
        "word_count", "word_count(text: str) -> int",
        "number of whitespace-separated words; raises TypeError for anything but a str",
        'def word_count(text: str) -> int:\n    if not isinstance(text, str):\n'
        '        raise TypeError("word_count needs a str")\n    return len(text.split())\n',
        'def word_count(text: str) -> int:\n    return len((text or "").split())\n',
        ('word_count("one two  three") == 3', 'word_count("") == 0'),
        "word_count(None) raises TypeError",
    ),
    Requirement(
        "clamp", "clamp(value: float, low: float, high: float) -> float",
        "value limited to [low, high]; raises ValueError when low > high",
        'def clamp(value: float, low: float, high: float) -> float:\n    if low > high:\n'
        '        raise ValueError("low must not exceed high")\n    return max(low, min(value, high))\n',
        "def clamp(value: float, low: float, high: float) -> float:\n    return max(low, min(value, high))\n",
        ("clamp(5, 0, 3) == 3", "clamp(-1, 0, 3) == 0", "clamp(2, 0, 3) == 2"),
        "clamp(1, 3, 0) raises ValueError",
    ),
    Requirement(
        "chunk", "chunk(items: list, size: int) -> list",
        "consecutive slices of at most size items; raises ValueError when size < 1",
        "def chunk(items: list, size: int) -> list:\n    if size < 1:\n"
        '        raise ValueError("size must be at least 1")\n'
        "    return [items[i:i + size] for i in range(0, len(items), size)]\n",
        "def chunk(items: list, size: int) -> list:\n    step = max(size, 1)\n"
        "    return [items[i:i + step] for i in range(0, len(items), step)]\n",
        ("chunk([1, 2, 3], 2) == [[1, 2], [3]]", "chunk([], 3) == []"),
        "chunk([1, 2], 0) raises ValueError",
    ),
    Requirement(
        "parse_duration", "parse_duration(text: str) -> int",
        'seconds in a duration like "1h30m" or "45s"; raises ValueError on any other unit or text',
        'def parse_duration(text: str) -> int:\n    units = {"h": 3600, "m": 60, "s": 1}\n'
        '    parts = re.fullmatch(r"(?:\\d+[hms])+", text.strip())\n    if not parts:\n'
        '        raise ValueError(f"not a duration: {text!r}")\n'
        '    return sum(int(n) * units[u] for n, u in re.findall(r"(\\d+)([hms])", text))\n',
        'def parse_duration(text: str) -> int:\n    units = {"h": 3600, "m": 60, "s": 1}\n'
        '    return sum(int(n) * units.get(u, 0) for n, u in re.findall(r"(\\d+)([a-z]?)", text))\n',
        ('parse_duration("1h30m") == 5400', 'parse_duration("45s") == 45'),
        'parse_duration("90x") raises ValueError', imports="import re",
    ),
    Requirement(
        "mean", "mean(values: list) -> float",
        "arithmetic mean; raises ValueError for an empty list",
        "def mean(values: list) -> float:\n    if not values:\n"
        '        raise ValueError("mean of nothing")\n    return sum(values) / len(values)\n',
        "def mean(values: list) -> float:\n    return sum(values) / max(len(values), 1)\n",
        ("mean([1, 2, 3]) == 2", "mean([4]) == 4"),
        "mean([]) raises ValueError",
    ),
)

BY_NAME = {r.name: r for r in CATALOG}
COMPONENTS = ("core", "extras")
SPEC_FILE = "SPEC.md"
VERSION = "0.1.0"
EXPORTING = "core"  # the component whose implementer re-exports its functions from the package
PACKAGE_TEST = "tests/test_package.py"


def package_init(exports: str = "", careful: bool = True) -> str:
    """The package's __init__.py: its version (dropped by a hasty rewrite) and, once the
    exporting component is built, that component's functions at the top level."""
    parts = ['"""Built by the orch sim team."""', ""]
    if careful:
        parts.append(f'__version__ = "{VERSION}"')
    if exports:
        parts.append(f"from .{exports} import *  # noqa: F401,F403 - its functions at the package's top level")
    return "\n".join(parts).rstrip() + "\n"


def package_test_source(pkg: str) -> str:
    """The architect's test of the package itself (its version), which the core implementer's hasty rewrite breaks."""
    return "\n".join([
        "import unittest", "", f"import {pkg}", "", "",
        "class TestPackage(unittest.TestCase):",
        "    def test_version(self):",
        f"        self.assertEqual({pkg}.__version__, \"{VERSION}\")", "", "",
        'if __name__ == "__main__":', "    unittest.main()", ""])


#: A failing test named in a fix request → the file that repairs it (given the package name).
REPAIRS = {"test_version": lambda pkg: (f"{pkg}/__init__.py", package_init(EXPORTING, careful=True))}


def package_name(goal: str) -> str:
    """A Python package name from the goal: its first two meaningful words."""
    stop = {"a", "an", "the", "build", "make", "write", "create", "small", "tiny", "simple", "for", "of", "and", "with"}
    words = [w for w in re.findall(r"[a-z]+", goal.lower()) if w not in stop]
    name = "".join(words[:2]) or "project"
    return name[:24] if name[0].isalpha() else f"p{name[:23]}"


def plan_components(goal: str) -> dict[str, list[Requirement]]:
    """Split the catalog into two independent components, in an order the goal picks."""
    h = int(hashlib.sha256(goal.encode()).hexdigest(), 16)
    order = sorted(CATALOG, key=lambda r: hashlib.sha256(f"{h}{r.name}".encode()).hexdigest())
    return {"core": order[:3], "extras": order[3:]}


def render_spec(goal: str) -> str:
    """The architect's specification: components, requirements, executable examples."""
    pkg = package_name(goal)
    lines = [f"# Specification: `{pkg}`", "", f"Goal: {goal}", "",
             "Two independent components; each can be built in parallel. Every requirement has",
             "examples that a reviewer runs; each must hold exactly.", ""]
    n = 0
    for comp, reqs in plan_components(goal).items():
        lines += [f"## Component {comp} — `{pkg}/{comp}.py`", ""]
        for r in reqs:
            n += 1
            lines.append(f"- **R{n}** `{r.signature}`: {r.summary}.")
            for ex in r.examples:
                lines.append(f"  - example: `{ex}`")
            lines.append(f"  - example: `{r.edge}`")
        lines.append("")
    lines += ["## Tests", "", "Unit tests live in `tests/test_<component>.py` and run with "
              "`python3 -m unittest discover -s tests -t .`.", ""]
    return "\n".join(lines)


@dataclass
class SpecItem:
    rid: str
    component: str
    module_path: str
    req: Requirement
    examples: list[str]


_REQ_LINE = re.compile(r"^- \*\*(R\d+)\*\* `([a-z_]+)\(")
_COMP_LINE = re.compile(r"^## Component (\w+) — `([^`]+)`")
_EXAMPLE_LINE = re.compile(r"^\s+- example: `(.+)`\s*$")


def parse_spec(text: str) -> tuple[str, list[SpecItem]]:
    """The package name and requirements of a spec written by render_spec (tolerant)."""
    pkg = ""
    m = re.search(r"# Specification: `([^`]+)`", text)
    if m:
        pkg = m.group(1)
    items: list[SpecItem] = []
    comp, path = "", ""
    for line in text.splitlines():
        if cm := _COMP_LINE.match(line):
            comp, path = cm.group(1), cm.group(2)
        elif (rm := _REQ_LINE.match(line)) and rm.group(2) in BY_NAME:
            items.append(SpecItem(rm.group(1), comp, path, BY_NAME[rm.group(2)], []))
        elif (em := _EXAMPLE_LINE.match(line)) and items:
            items[-1].examples.append(em.group(1))
    return pkg, items


def module_source(reqs: list[tuple[Requirement, bool]]) -> str:
    """A module implementing the requirements; the bool says whether to write it carefully."""
    imports = sorted({r.imports for r, _ in reqs if r.imports})
    parts = ['"""Generated by the orch sim implementer."""', ""]
    parts += imports + ([""] if imports else [])
    for r, careful in reqs:
        parts += ["", (r.code if careful else r.hasty)]
    return "\n".join(parts).rstrip() + "\n"


def test_source(pkg: str, component: str, items: list[SpecItem], with_edges: bool) -> str:
    """unittest tests from the spec's examples (the hasty implementer skips edge cases)."""
    names = ", ".join(sorted({i.req.name for i in items}))
    out = ["import unittest", "", f"from {pkg}.{component} import {names}", "", "",
           f"class Test{component.title()}(unittest.TestCase):"]
    n = 0
    for it in items:
        for ex in it.examples:
            if " raises " in ex:
                if not with_edges:
                    continue
                expr, exc = ex.split(" raises ")
                n += 1
                out += [f"    def test_{n}_{it.req.name}(self):",
                        f"        with self.assertRaises({exc.strip()}):", f"            {expr.strip()}", ""]
            else:
                n += 1
                out += [f"    def test_{n}_{it.req.name}(self):", f"        self.assertTrue({ex})", ""]
    out += ["", 'if __name__ == "__main__":', "    unittest.main()", ""]
    return "\n".join(out)

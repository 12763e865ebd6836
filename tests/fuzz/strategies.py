"""What the fuzz tests feed the parsers: hostile JSON and TOML values, a small TOML writer
(for structured mutations of a valid configuration), and the settings of each test."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from tests.fuzz.conftest import PROFILE


def fuzz_settings(share: float = 1.0, *, io: bool = False) -> settings:
    """The profile's ``max_examples`` times ``share`` (I/O-bound tests get a smaller share);
    tests that do I/O have no deadline and share one peer across examples."""
    profile = settings.get_profile(PROFILE)
    return settings(
        parent=profile,
        max_examples=max(10, int(profile.max_examples * share)),
        deadline=None if io else timedelta(seconds=1),
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                               HealthCheck.data_too_large] if io else [HealthCheck.too_slow],
    )


# -- hostile values -----------------------------------------------------------------------
@dataclass(frozen=True)
class Deep:
    """A list nested ``depth`` deep, past every decoder's recursion limit (written out by
    the writers below; as a value it would break the printing of a failing example). The
    limit is Python's, which Hypothesis raises while a test runs: hence 10,000 deep."""

    depth: int


@dataclass(frozen=True)
class Big:
    """An integer of more than 4300 decimal digits: ``str()`` of it raises ValueError."""

    digits: int


text = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)  # encodable text
nasty_ints = st.one_of(st.integers(), st.integers(-(2**70), 2**70),
                       st.sampled_from([0, -1, 2**63, -(2**63) - 1]))
nasty_floats = st.one_of(st.floats(), st.sampled_from([0.0, -0.0, 1e308, 5e-324]))
hostile = st.one_of(st.builds(Deep, st.integers(1, 10_000)),
                    st.builds(Big, st.integers(4301, 4400)))
scalars = st.one_of(st.none(), st.booleans(), nasty_ints, nasty_floats, text)
json_values = st.recursive(
    scalars | hostile,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(text, inner, max_size=4)),
    max_leaves=12)


def json_bytes(value: Any) -> bytes:
    """JSON text of any value, NaN, infinities, deep nesting and huge integers included."""
    if value is None:
        return b"null"
    if isinstance(value, bool):
        return b"true" if value else b"false"
    if isinstance(value, int):
        return b"%d" % value
    if isinstance(value, float):
        return b"NaN" if math.isnan(value) else repr(value).encode().replace(b"inf", b"1e999")
    if isinstance(value, str):
        return _json_str(value).encode()
    if isinstance(value, Deep):
        return b"[" * value.depth + b"]" * value.depth
    if isinstance(value, Big):
        return b"1" + b"0" * value.digits
    if isinstance(value, list):
        return b"[" + b",".join(json_bytes(v) for v in value) + b"]"
    return b"{" + b",".join(_json_str(k).encode() + b":" + json_bytes(v)
                            for k, v in value.items()) + b"}"


def _json_str(s: str) -> str:
    return '"' + "".join(c if c not in '"\\' and c >= " " else f"\\u{ord(c):04x}"
                         for c in s) + '"'


@st.composite
def mutation(draw: st.DrawFn, doc: Any, value: st.SearchStrategy[Any]) -> tuple[Any, str]:
    """``doc`` with one key of a table (at any depth) replaced, removed or added; returns
    the new document and the path of the change."""
    paths: list[tuple[Any, ...]] = []

    def walk(node: Any, path: tuple[Any, ...]) -> None:
        if isinstance(node, dict):
            paths.append(path)
            for k, v in node.items():
                walk(v, (*path, k))
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, (*path, i))

    walk(doc, ())
    path = draw(st.sampled_from(paths))
    new = _copy(doc)
    table = new
    for step in path:
        table = table[step]
    key = draw(st.sampled_from(sorted(table)) | text) if table else draw(text)
    how = draw(st.sampled_from(["replace", "remove", "add"]))
    if how == "remove" and key in table:
        del table[key]
    else:
        table[key] = draw(value)
    return new, ".".join(str(p) for p in (*path, key))


def _copy(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _copy(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_copy(x) for x in v]
    return v


# -- a small TOML writer (tomli_w is not a dependency) ------------------------------------
_BARE = re.compile(r"[A-Za-z0-9_-]+")


def toml_key(k: str) -> str:
    return k if _BARE.fullmatch(k) else _toml_str(k)


def _toml_str(s: str) -> str:
    return '"' + "".join(
        "\\" + c if c in '"\\' else f"\\u{ord(c):04X}" if c < " " or c == "\x7f" else c
        for c in s) + '"'


def toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, Deep):
        return "[" * v.depth + "]" * v.depth
    if isinstance(v, Big):  # hex: tomllib's int() of so many decimal digits would refuse
        return "0x" + "F" * (v.digits * 5 // 6 + 1)
    if isinstance(v, float):
        return "nan" if math.isnan(v) else {math.inf: "inf", -math.inf: "-inf"}.get(v, repr(v))
    if isinstance(v, str):
        return _toml_str(v)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{toml_key(k)} = {toml_value(x)}" for k, x in v.items()) + "}"
    if v is None:
        return '""'  # TOML has no null
    return v.isoformat()  # type: ignore[no-any-return]  # dates and times


def toml_dumps(doc: dict[str, Any]) -> str:
    """Every top-level key as ``key = <inline value>``: valid TOML 1.0 for any document."""
    return "".join(f"{toml_key(k)} = {toml_value(v)}\n" for k, v in doc.items())

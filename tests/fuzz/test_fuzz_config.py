"""The configuration file (``gateway.settings``): any text, any file, any change to a valid
configuration either gives settings or raises ``ConfigError``, each problem naming the file
and then the key (or the position in the text) it is about; never another exception.
``config_warnings`` (what check-config adds) never fails on settings that loaded."""

from __future__ import annotations

import tempfile
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from gateway.core.errors import ConfigError
from gateway.settings import Settings, config_warnings, load_settings, parse_settings
from tests.fuzz.strategies import (
    Big,
    Deep,
    fuzz_settings,
    hostile,
    json_values,
    mutation,
    scalars,
    text,
    toml_dumps,
)

CONFIG = Path(__file__).resolve().parents[2] / "config"
VALID = {name: (CONFIG / name).read_text("utf-8") for name in ("example.toml", "demo.toml")}
DOCS = {name: tomllib.loads(t) for name, t in VALID.items()}

# pieces of TOML, so that random text is often nearly TOML
TOKENS = ["[", "]", "[[", "]]", "=", '"', "'", '"""', "\n", " ", "#", ",", "{", "}", ".",
          "gate", "lanes", "zones", "central", "id", "kind", "pin", "base_urls", "1", "-1",
          "0x", "1e400", "inf", "nan", "true", "1979-05-27", "T07:32:00Z", "\\u00", "\\"]
toml_ish = st.lists(st.sampled_from(TOKENS) | st.text(max_size=3), max_size=60).map("".join)
envs = st.fixed_dictionaries({}, optional={
    "WATCHDOG_USEC": st.integers().map(str) | text,
    "GATEWAY_TEST_UNGUARDED_SAFETY": st.sampled_from(["1", "0", ""]),
    "GATEWAY_ADMIN_TOKEN": text, "GATEWAY_MQTT_PASSWORD": text, "NOTIFY_SOCKET": text})
# what a mutation puts in: anything TOML can hold, and values of the right kind
values = st.one_of(json_values.filter(lambda v: v is not None), hostile, scalars,
                   st.sampled_from(["gpio", "serial", "opencv", "GPIO2", "GPIO²", "GPIO99",
                                    "GPIO" + "1" * 4301, "http://x", "", "A", "presence",
                                    "normal", "sim"]),
                   st.dates(), st.datetimes(), st.times())


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="fuzz-config-") as d:
        yield Path(d)


def checked(parse: Callable[[], Settings], source: str, keys: Any) -> None:
    """The property: settings (and their warnings), or a ConfigError naming file and key."""
    try:
        s = parse()
    except ConfigError as exc:
        problems = exc.problems
    else:
        assert isinstance(s, Settings) and s.source == source
        for warning in config_warnings(s):
            assert warning.startswith(f"{source}: "), warning
        return
    assert problems
    for p in problems:
        assert p.startswith(f"{source}: "), p
        rest = p[len(source) + 2:]
        assert rest.startswith(("not valid TOML: ", "GATEWAY_TEST_UNGUARDED_SAFETY",
                                "no such file", "cannot be read: ", "(top level)", *keys)), p


def top_keys(text_: str) -> list[str]:
    try:
        return list(tomllib.loads(text_))
    except Exception:
        return []


@fuzz_settings()
@given(st.one_of(toml_ish, st.text(max_size=200),
                 st.sampled_from(list(VALID.values())).flatmap(
                     lambda t: st.tuples(st.just(t), st.integers(0, len(t)),
                                         st.integers(0, 40), toml_ish)).map(
                     lambda a: a[0][:a[1]] + a[3] + a[0][a[1] + a[2]:])),
       envs)
@example("gate = " + "[" * 10_000 + "]" * 10_000, {})  # RecursionError from tomllib
@example("a = " + "1" * 4301, {})  # ValueError: tomllib's int() of over 4300 digits
def test_any_text_parses_or_names_the_problem(tried, text_: str, env: dict[str, str]):
    tried("config (text)")
    checked(lambda: parse_settings(text_, "fuzz.toml", env), "fuzz.toml", top_keys(text_))


@fuzz_settings(0.5, io=True)
@given(st.binary(max_size=300) | toml_ish.map(lambda t: t.encode("utf-8", "surrogatepass")))
def test_any_file_loads_or_names_the_problem(tried, workdir: Path, raw: bytes):
    tried("config (file)")
    path = workdir / "bytes.toml"
    path.write_bytes(raw)
    try:
        keys = top_keys(raw.decode("utf-8"))
    except UnicodeDecodeError:
        keys = []
    checked(lambda: load_settings(path, {}), str(path), keys)


@fuzz_settings(io=True)
@given(st.sampled_from(sorted(DOCS)), st.data(), envs)
@example("example.toml", {"gate.id": Big(4301)}, {})  # ValueError: repr() of the integer
@example("example.toml", {"lanes": Deep(10_000)}, {})  # RecursionError from tomllib
@example("example.toml",  # ValueError: int("²") of a pin named "GPIO²" (boot warnings)
         {"lanes": [{"id": "in", "direction": "entry",
                     "barrier": {"kind": "gpio", "open_pin": "GPIO²", "close_pin": 17}}]}, {})
def test_any_change_to_a_valid_file_loads_or_names_the_key(tried, workdir: Path, name: str,
                                                           data: Any, env: dict[str, str]):
    tried("config (mutated)")
    if isinstance(data, dict):  # an @example: set these keys (dotted paths)
        doc = {k: dict(v) if isinstance(v, dict) else v for k, v in DOCS[name].items()}
        for dotted, value in data.items():
            *tables, key = dotted.split(".")
            table = doc
            for t in tables:
                table = table[t]
            table[key] = value
    else:
        doc = DOCS[name]
        for _ in range(data.draw(st.integers(1, 3), label="mutations")):
            doc, _where = data.draw(mutation(doc, values))
    path = workdir / "mutated.toml"
    path.write_text(toml_dumps(doc), "utf-8")
    checked(lambda: load_settings(path, env), str(path), list(doc))


def test_the_writer_round_trips_the_valid_files():
    for doc in DOCS.values():
        assert tomllib.loads(toml_dumps(doc)) == doc

"""What the product imports is what it declares, and the lock files pin what is declared.

Every third-party package imported anywhere in gateway/ or hardware/ (lazy and type-only
imports included) must be a dependency in pyproject.toml, and every dependency must be
imported, or be listed in NOT_IMPORTED with the reason (and then not be imported: a stale
reason is an error). requirements.lock must pin every
runtime dependency inside its range, requirements-dev.lock every development tool of
requirements-dev.txt, both with hashes and agreeing with each other, and the venv the tests
run in must have the locked versions (a package installed by hand and never locked would
be missing from every install made from the lock). ~0.3 s."""

from __future__ import annotations

import ast
import functools
import importlib.metadata as md
import sys
import tomllib
from collections.abc import Mapping
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
FIRST_PARTY = {"gateway", "hardware"}
RELOCK = ("re-lock (README, 'Dependencies and the lock files'): "
          "uv pip compile pyproject.toml --universal --python-version 3.11 --generate-hashes "
          "-o requirements.lock, then the same with requirements-dev.txt and "
          "-c requirements.lock -o requirements-dev.lock")

# Declared without an import in gateway/ or hardware/, each for a reason.
NOT_IMPORTED = {
    "lgpio": "gpiozero loads it by itself as the pin factory on a Raspberry Pi",
}


def declared() -> dict[str, Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["project"]
    assert "dependencies" not in project.get("dynamic", []), "dependencies must be listed"
    reqs = [Requirement(r) for r in project["dependencies"]]
    return {canonicalize_name(r.name): r for r in reqs}


@functools.cache
def distributions() -> Mapping[str, list[str]]:
    return md.packages_distributions()


@functools.cache
def imported_modules() -> dict[str, set[str]]:
    """Top-level module name -> files importing it, for every absolute import."""
    found: dict[str, set[str]] = {}
    for folder in FIRST_PARTY:
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text("utf-8"), str(path))):
                names: list[str] = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                for name in names:
                    top = name.split(".")[0]
                    if top not in sys.stdlib_module_names and top not in FIRST_PARTY:
                        found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


def lock(name: str) -> dict[str, tuple[Requirement, int]]:
    """A lock file's pins: canonical name -> (requirement with its marker, hash count)."""
    text = (ROOT / name).read_text("utf-8").replace("\\\n", " ")
    pins: dict[str, tuple[Requirement, int]] = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        spec, *hashes = line.split(" --hash=")
        req = Requirement(spec.strip())
        key = canonicalize_name(req.name)
        assert key not in pins or pins[key][0].marker, f"{name}: {key} pinned twice"
        pins[key] = (req, len(hashes))
    return pins


def pinned_version(req: Requirement) -> str:
    (spec,) = req.specifier
    assert spec.operator == "==", f"not pinned: {req}"
    return spec.version


def undeclared(deps: Mapping[str, Requirement]) -> list[str]:
    """The product's imports that no distribution in ``deps`` provides."""
    dists = distributions()
    found = []
    for module, files in sorted(imported_modules().items()):
        owners = {canonicalize_name(d) for d in dists.get(module, [])}
        assert owners, f"{module} (imported by {sorted(files)}) is not installed"
        if not owners & deps.keys():
            found.append(f"{module} ({'/'.join(sorted(owners))}) imported by {sorted(files)}")
    return found


def test_every_import_of_the_product_is_a_declared_dependency() -> None:
    missing = undeclared(declared())
    assert not missing, "imported but not in pyproject.toml's dependencies: " + \
        "; ".join(missing)


def test_an_import_made_only_inside_a_function_is_caught_when_undeclared() -> None:
    # gateway/store/reports.py imports sqlite_utils lazily (in a function and for types
    # only): without sqlite-utils in the dependencies that import must be reported
    deps = {k: v for k, v in declared().items() if k != "sqlite-utils"}
    assert undeclared(deps) == [
        "sqlite_utils (sqlite-utils) imported by ['gateway/store/reports.py']"]


def test_every_declared_dependency_is_imported_or_has_its_reason() -> None:
    dists = distributions()
    used = {canonicalize_name(d) for module in imported_modules()
            for d in dists.get(module, [])}
    unused = sorted(set(declared()) - used - set(NOT_IMPORTED))
    assert not unused, f"declared but never imported by gateway/ or hardware/: {unused}"
    stale = sorted(set(NOT_IMPORTED) & used)
    assert not stale, f"NOT_IMPORTED names what gateway/ or hardware/ imports: {stale}"
    assert set(NOT_IMPORTED) <= set(declared()), "NOT_IMPORTED names an undeclared package"


def test_the_runtime_lock_pins_every_dependency_inside_its_range_with_hashes() -> None:
    pins = lock("requirements.lock")
    for key, req in declared().items():
        assert key in pins, f"{req} is not in requirements.lock: {RELOCK}"
        version = pinned_version(pins[key][0])
        assert req.specifier.contains(version, prereleases=True), \
            f"requirements.lock pins {key}=={version}, outside {req}: {RELOCK}"
    assert all(count for _, count in pins.values()), "a pin without a hash"


def test_the_dev_lock_pins_the_tools_and_agrees_with_the_runtime_lock() -> None:
    dev = lock("requirements-dev.lock")
    for line in (ROOT / "requirements-dev.txt").read_text("utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            req = Requirement(line)
            tool = canonicalize_name(req.name)
            assert tool in dev, f"{req} is not in requirements-dev.lock: {RELOCK}"
            assert req.specifier.contains(pinned_version(dev[tool][0]), prereleases=True), \
                f"requirements-dev.lock does not satisfy {req}: {RELOCK}"
    for key, (req, _) in lock("requirements.lock").items():
        assert key in dev and pinned_version(dev[key][0]) == pinned_version(req), \
            f"the locks disagree on {key}: {RELOCK}"
    assert all(count for _, count in dev.values()), "a pin without a hash"


def test_the_venv_has_the_locked_versions() -> None:
    wrong = []
    for key, (req, _) in lock("requirements-dev.lock").items():
        if req.marker is not None and not req.marker.evaluate():
            continue
        try:
            installed = md.version(key)
        except md.PackageNotFoundError:
            wrong.append(f"{key}: missing")
            continue
        if Version(installed) != Version(pinned_version(req)):
            wrong.append(f"{key}: {installed}, locked {pinned_version(req)}")
    assert not wrong, f"the venv differs from requirements-dev.lock ({wrong}): " \
        "make clean && make venv, or re-lock if the lock is behind: " + RELOCK

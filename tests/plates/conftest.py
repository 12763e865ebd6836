"""The plate tests' model: loaded once per session, shared by the readers the tests build.
It is the recogniser cut to plate characters, as the gate runs it (slim_model.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gateway.plates.engine import Engine, RapidEngine, packaged_model_dir
from gateway.plates.reader import PlateReader
from gateway.settings import PlateSettings

ALL_FORMATS = ["TR", "DE", "NL", "GB", "FR"]


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data directory's ``models``, shared by the session's tests (cut once)."""
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def engine(model_cache: Path) -> Engine:
    made = RapidEngine(packaged_model_dir(), threads=2, detector=True, cache_dir=model_cache)
    assert made.model.slim, made.model.note
    return made


class SharedEngineReader(PlateReader):
    """A real reader whose start() hands over the session's engine instead of loading."""

    def __init__(self, settings: PlateSettings, engine: Engine) -> None:
        super().__init__(settings)
        self._shared = engine

    def _load_engine(self) -> Engine:
        return self._shared


@pytest.fixture
def make_reader(engine: Engine) -> Iterator[Callable[..., PlateReader]]:
    made: list[PlateReader] = []

    def make(**overrides: object) -> PlateReader:
        settings = PlateSettings(**{"formats": ALL_FORMATS, **overrides})
        reader = SharedEngineReader(settings, engine)
        made.append(reader)
        return reader

    yield make
    for reader in made:
        reader.close()

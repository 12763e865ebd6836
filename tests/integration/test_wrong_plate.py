"""A verification answered for another plate than the one asked (reliability campaign
finding F4): with real components (the sim central on 127.0.0.1 refusing, the in-process
backup answering about another car), the answer is refused, not taken: the car is not let
in on another plate's permit and no space is held under a plate nobody drives."""

from __future__ import annotations

import pytest

from gateway.core.errors import TransientError
from gateway.core.steps import ENTRY
from gateway.sagas.chain import _answers_the_question, edit_distance
from gateway.store import spaces
from tests.integration.test_offline_queue_faults import make_world

VERIFY = ENTRY.steps[0]


async def test_a_backup_answer_about_another_plate_is_refused(tmp_path):
    async with make_world(tmp_path, backup=True) as w:
        assert w.backup is not None
        await w.fault("refuse")
        w.backup.forge_plate = "99FORGED99"
        out = await w.entry("41CVY9504")
        assert out.status == "compensated", out  # nothing else could answer: the policy
        held = [s for s in await w.store.read(spaces.list_spaces) if s["state"] == "allocated"]
        assert held == []
        w.backup.forge_plate = None
        honest = await w.entry("41CVY9504")
        assert honest.status == "completed" and honest.sources["verify_license_plate"] == "backup"


def test_a_service_that_read_the_image_may_correct_a_misread_only():
    asked = {"license_plate": "34ABC128", "image_jpeg_b64": "..."}
    _answers_the_question(VERIFY, asked, {"license_plate": "34ABC123"}, "central")
    _answers_the_question(VERIFY, {"image_jpeg_b64": "..."}, {"license_plate": "06X1"}, "c")
    with pytest.raises(TransientError, match="wrong_plate"):
        _answers_the_question(VERIFY, asked, {"license_plate": "99FORGED99"}, "central")
    with pytest.raises(TransientError, match="wrong_plate"):  # no image: nothing to read
        _answers_the_question(VERIFY, {"license_plate": "34ABC128"},
                              {"license_plate": "34ABC123"}, "backup")
    assert edit_distance("34ABC123", "34ABC123") == 0
    assert edit_distance("34ABC123", "34AB123") == 1
    assert edit_distance("34ABC123", "43ABC123") == 2

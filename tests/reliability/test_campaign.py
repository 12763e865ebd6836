"""The reliability campaign (issue 9): the daemon as a process under a seeded random
schedule of faults, then the invariant checker over what an outsider saw.

- the short form (``make test``): a fixed seed, every fault kind at least once, a few
  kills; no violation on the real code;
- the planted faults: each deliberately broken path (``gateway/sim/planted.py``) switched
  on alone, under a schedule that makes it matter; the checker must report it;
- the long form (``make soak``, marker ``soak``): the same campaign with at least 50 kills
  and every fault kind many times; its figures are printed at the end of the run.
"""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from tests.reliability.campaign import FAULT_KINDS, RESULTS, Campaign, Outcome, Plan

SEED = 20261201
# Known open findings (README "Reliability campaign"), left out of the green forms until
# fixed, each reproduced by a strict xfail test (none open now; F1-F4 were fixed).
OPEN_FINDINGS: dict[str, str] = {}
KINDS = tuple(k for k in FAULT_KINDS if k not in OPEN_FINDINGS)


def every_kind_first(seed: int, rounds: int) -> tuple[str, ...]:
    """Every fault kind once (the kill included), in an order drawn from the seed, then
    kinds drawn from the seed."""
    rng = random.Random(seed)
    kinds = list(KINDS)
    rng.shuffle(kinds)
    return (*kinds, *(rng.choice(KINDS) for _ in range(rounds - len(kinds))))


# a kill may also come at a random instant of any round
# (at least two: the random ones alone were once only one in a clean-clone run)
SHORT = Plan(seed=SEED, rounds=len(KINDS) + 6, kill_chance=0.2, round_s=(2.5, 4.0),
             min_kills=2, kinds=KINDS, schedule=every_kind_first(SEED, len(KINDS) + 6))
LONG = Plan(seed=SEED + 1, rounds=150, kill_chance=0.3, min_kills=50, kinds=KINDS)
# each planted fault with the schedule that exposes it, and the invariant that must break
PLANTED: dict[str, tuple[Plan, str]] = {
    # refused events taken as delivered: gaps in the stream
    "ignore_puback_codes": (Plan(seed=SEED, rounds=2, kill_chance=0.0, round_s=(4.0, 4.0),
                                 schedule=("broker_refuse",), exit_share=0.3), "seq"),
    # writes that land at central without an answer, the backup silent, cars that back
    # out: a create sent and not answered is dropped as never sent
    "queue_undo_unconditional": (Plan(
        seed=SEED, rounds=3, kill_chance=0.0, round_s=(6.0, 6.0),
        schedule=("central_commit_no_reply+backup_silent",), behaviours=("back_out",),
        exit_share=0.0, blocked_share=0.0,
        config_edits=(("reset_timeout_s = 1.0", "reset_timeout_s = 1.0\n"
                       "failure_threshold = 1000\nmin_calls_in_window = 1000"),)),
        "central"),
    # relays-off that does nothing: what the killed daemon drove stays energised
    "relays_off_noop": (Plan(seed=SEED, rounds=2, kill_chance=0.0, round_s=(2.0, 2.0),
                             schedule=("kill",)), "relays"),
}


def _explain(outcome: Outcome) -> str:
    lines = [str(v) for v in outcome.report.violations[:30]]
    return "\n".join([f"figures: {outcome.figures()}", *lines, "daemon log:",
                      *outcome.log_tail])


@pytest.mark.crash
@pytest.mark.timeout(240)
async def test_short_campaign_keeps_every_invariant(tmp_path):
    outcome = await Campaign(tmp_path, SHORT).run()
    RESULTS.append(("short campaign", outcome))
    assert not outcome.report.violations, _explain(outcome)
    assert outcome.kills >= 2 and set(KINDS) - {"kill"} <= set(outcome.faults)
    assert outcome.report.figures["events_received"] > 100


@pytest.mark.crash
@pytest.mark.timeout(90)
@pytest.mark.parametrize("fault", sorted(PLANTED))
async def test_the_checker_catches_a_planted_fault(tmp_path, fault):
    plan, invariant = PLANTED[fault]
    outcome = await Campaign(tmp_path, replace(plan, planted=(fault,))).run()
    RESULTS.append((f"planted {fault}", outcome))
    caught = outcome.report.of(invariant)
    assert caught, f"{fault} was not caught as a {invariant} violation\n{_explain(outcome)}"


@pytest.mark.soak
@pytest.mark.crash
@pytest.mark.timeout(3600)
async def test_long_campaign_keeps_every_invariant(tmp_path):
    outcome = await Campaign(tmp_path, LONG).run()
    RESULTS.append(("long campaign", outcome))
    assert outcome.kills >= 50
    assert not outcome.report.violations, _explain(outcome)



# -- what the campaign found (/tmp/campaign-findings.md, README "Reliability campaign"),
# each now fixed: the schedule that exposed it, kept as a regression ------------------------
FOUND = {
    # F1: a driver leaves while the gate is still deciding (slow services, a stall), the
    # next vehicle arrives before the saga's open request: the saga hung, then "opened"
    "F1": Plan(seed=SEED, rounds=3, kill_chance=0.0, round_s=(5.0, 5.0),
               schedule=("central_slow+backup_slow",), behaviours=("stall", "pass"),
               patience_s=2.4, drain_s=20.0),
    # F2: a saga whose log write fails on a full disk was abandoned mid-way
    "F2": Plan(seed=6, rounds=6, kill_chance=0.0, round_s=(2.5, 4.5),
               schedule=("disk_full",), drain_s=20.0),
    # F4: central refusing, so every verify goes to the backup, which answers about another
    # plate: the car was let in on that plate's permit, its space held under that plate
    "F4": Plan(seed=SEED, rounds=2, kill_chance=0.0, round_s=(4.0, 4.0),
               schedule=("central_refuse+backup_forge_plate",), behaviours=("pass",),
               exit_share=0.0, drain_s=20.0),
}


@pytest.mark.crash
@pytest.mark.timeout(90)
@pytest.mark.parametrize("finding", sorted(FOUND))
async def test_what_the_campaign_found_stays_fixed(tmp_path, finding):
    outcome = await Campaign(tmp_path, FOUND[finding]).run()
    RESULTS.append((f"finding {finding}", outcome))
    assert not outcome.report.violations, _explain(outcome)

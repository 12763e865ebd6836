from pathlib import Path

import pytest

from gateway.__main__ import main
from gateway.core.errors import ConfigError
from gateway.settings import boot_warnings, load_default, load_settings, parse_settings

CONFIG = Path(__file__).resolve().parents[2] / "config"


def test_example_and_demo_configs_are_valid():
    ex = load_settings(CONFIG / "example.toml")
    assert ex.central.deadline_s == 0.8 and ex.policy.entry_when_unverifiable == "deny"
    demo = load_default()
    assert demo.simulation.enabled and [lane.id for lane in demo.lanes] == ["entry-1", "exit-1"]


def test_every_problem_is_reported_with_file_and_key():
    text = """
[gate]
id = 7
colour = "red"
[central]
deadline_s = "fast"
base_urls = ["ftp://x"]
[[zones]]
name = "A"
spaces = 0
[[lanes]]
id = "e1"
direction = "sideways"
"""
    with pytest.raises(ConfigError) as info:
        parse_settings(text, "gw.toml")
    problems = info.value.problems
    assert all(p.startswith("gw.toml: ") for p in problems)
    joined = "\n".join(problems)
    for key in ("gate.id", "gate.colour: unknown key", "central.deadline_s", "zones[0].spaces",
                "lanes[0].direction"):
        assert key in joined
    assert len(problems) == 5


def test_cross_checks():
    text = """
[central]
base_urls = ["ftp://x"]
[[zones]]
name = "A"
spaces = 2
reserved = 3
[[lanes]]
id = "e1"
direction = "entry"
zone_order = ["Z"]
[[lanes]]
id = "e1"
direction = "exit"
"""
    with pytest.raises(ConfigError) as info:
        parse_settings(text, "gw.toml")
    joined = "\n".join(info.value.problems)
    assert "central.base_urls[0]" in joined and "exceeds spaces" in joined
    assert "used twice" in joined and "unknown zone 'Z'" in joined


def test_secrets_come_from_the_environment_and_never_print():
    s = parse_settings("", "x", {"GATEWAY_ADMIN_TOKEN": "hunter2", "GATEWAY_MQTT_PASSWORD": "pw"})
    assert s.admin_token.reveal() == "hunter2"
    assert "hunter2" not in repr(s) and "pw'" not in repr(s)
    with pytest.raises(ConfigError, match="unknown key"):
        parse_settings('admin_token = "x"', "x")


def test_toml_syntax_error_and_missing_file():
    with pytest.raises(ConfigError, match=r"bad.toml: not valid TOML"):
        parse_settings("[gate", "bad.toml")
    with pytest.raises(ConfigError, match="no such file"):
        load_settings("/nonexistent/gw.toml")


def test_check_config_exit_codes(tmp_path, capsys):
    good = tmp_path / "good.toml"
    good.write_text('[gate]\nid = "g"\n')
    assert main(["check-config", str(good)]) == 0
    bad = tmp_path / "bad.toml"
    bad.write_text('[gate]\nid = 1\n[web]\nport = "x"\n')
    assert main(["check-config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "2 problem(s)" in err and "gate.id" in err and "web.port" in err


GPIO_LANE = """
[[lanes]]
id = "entry-1"
direction = "entry"
[lanes.arming_loop]
kind = "gpio"
pin = 17
[lanes.barrier]
kind = "gpio"
open_pin = 22
close_pin = 23
[lanes.camera]
kind = "none"
[lanes.safety_loop]
kind = "gpio"
pin = 27
"""


def problems_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as err:
        parse_settings(text, "gate.toml")
    return err.value.problems


def test_a_fail_safe_safety_loop_is_accepted_and_reads_occupied_on_a_cut_wire():
    settings = parse_settings(GPIO_LANE + 'pull = "up"\nactive_means = "clear"\n', "g.toml")
    wiring = settings.lanes[0].safety_loop.wiring()
    assert wiring.broken_wire_reads() is True  # the pull-up wins: "occupied"
    assert wiring.reads(False) is False  # the contact closed to ground: clear


@pytest.mark.parametrize(("extra", "says"), [
    ('active_means = "occupied"\n', "a cut wire or a dead detector would read \"clear\""),
    ('pull = "none"\n', "leaves the pin floating"),
    ('mode = "pulse_on_entry"\n', 'must be "presence"'),
    ('active_level = "high"\n', "the level the pull already gives"),
])
def test_check_config_refuses_a_safety_loop_that_could_let_the_arm_down(extra, says):
    problems = problems_of(GPIO_LANE + extra)
    assert any(p.startswith("gate.toml: lanes[0].safety_loop") and says in p
               for p in problems), problems


def test_the_old_active_high_key_says_what_to_write_instead():
    problems = problems_of(GPIO_LANE + "active_high = false\n")
    assert problems == [
        p for p in problems if "lanes[0].safety_loop.active_high: replaced by active_level "
        "and active_means" in p and 'active_means = "clear"' in p] and problems


def test_check_config_command_exits_2_for_a_pulse_safety_loop(tmp_path, capsys):
    path = tmp_path / "gate.toml"
    path.write_text(GPIO_LANE + 'mode = "pulse_on_exit"\n')
    assert main(["check-config", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}: lanes[0].safety_loop.mode" in err and "presence" in err


def test_check_config_warns_of_a_relay_the_boot_pulls_would_energise(capsys):
    assert main(["check-config", str(CONFIG / "example.toml")]) == 0
    assert "warning" not in capsys.readouterr().out  # the example's pins are right
    settings = parse_settings(GPIO_LANE + 'active_means = "clear"\n[lanes.indicators]\n'
                              'kind = "gpio"\ngreen_pin = 5\nred_pin = 16\n', "g.toml")
    warnings = boot_warnings(settings)
    assert len(warnings) == 1 and "green_pin: GPIO5 is pulled high" in warnings[0]


def test_the_unguarded_test_switch_is_refused_outside_the_simulator():
    text = GPIO_LANE + 'active_means = "clear"\n'
    with pytest.raises(ConfigError, match="for tests of the simulator only"):
        parse_settings(text, "g.toml", {"GATEWAY_TEST_UNGUARDED_SAFETY": "1"})
    assert not parse_settings(text, "g.toml").test_unguarded_safety


def test_a_gpio_barrier_needs_its_close_relay_or_says_it_closes_itself():
    text = GPIO_LANE.replace("close_pin = 23\n", "") + 'active_means = "clear"\n'
    assert any("barrier.close_pin: give the close relay's pin" in p for p in problems_of(text))
    text = text.replace("open_pin = 22\n", "open_pin = 22\ncloses_itself = true\n")
    assert parse_settings(text, "g.toml").lanes[0].barrier.closes_itself


def test_check_config_warns_that_synchronous_normal_weakens_exactly_once(tmp_path, capsys):
    path = tmp_path / "gate.toml"
    path.write_text('[store]\nsynchronous = "normal"\n')
    assert main(["check-config", str(path)]) == 0
    out = capsys.readouterr().out
    assert 'warning: ' in out and "store.synchronous" in out and "power cut" in out

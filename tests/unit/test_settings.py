from pathlib import Path

import pytest

from gateway.__main__ import main
from gateway.core.errors import ConfigError
from gateway.settings import load_default, load_settings, parse_settings

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

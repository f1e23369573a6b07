"""Run configuration: the shipped configs resolve, overrides apply, bad input names the field."""

from pathlib import Path

import pytest

from testbed.config import ConfigError, config_from_dict, load_config, resolve_path, to_dict

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


@pytest.mark.parametrize("name", sorted(p.name for p in CONFIGS.glob("*.toml")))
def test_shipped_configs_validate(name):
    cfg = load_config(CONFIGS / name)
    assert cfg.source.endswith(name)
    # the catalog folder resolves beside the checkout's results/, not the working directory
    assert resolve_path(cfg, cfg.catalog.dir).resolve().parent.parent.name == "results"
    # round trip through the resolved dict that metadata.json records
    again = config_from_dict({k: v for k, v in to_dict(cfg).items() if k != "source"})
    assert to_dict(again) | {"source": ""} == to_dict(cfg) | {"source": ""}


def test_quick_and_default_shapes():
    quick = load_config(CONFIGS / "quick.toml")
    assert len(quick.schedulers) == 2 and quick.players.count == 2
    assert quick.session.duration_s == 60.0
    default = load_config(CONFIGS / "default.toml")
    names = {e.name for e in default.schedulers}
    assert {"no-preload", "fixed", "dashlet", "challenge-fixed"} <= names
    assert len(default.network.traces) >= 3


def test_overrides(tmp_path):
    cfg = load_config(CONFIGS / "quick.toml",
                      ["session.duration_s=20", "players.count=3", "network.backend=userspace",
                       'network.traces=["synthetic"]'])
    assert cfg.session.duration_s == 20.0 and cfg.players.count == 3
    assert cfg.network.backend == "userspace" and cfg.network.traces == ("synthetic",)


@pytest.mark.parametrize("override, match", [
    ("session.duration_s=0", "session.duration_s: expected > 0"),
    ("players.count=x", "players.count: expected an integer"),
    ("mode=sideways", "mode: expected one of"),
    ("network.nope=1", r"unknown field\(s\) \['nope'\]"),
    ("session.duration_s", "expected section.field=value"),
    ("qoe.startup=-1", "qoe.startup: expected >= 0"),
])
def test_bad_overrides_name_the_field(override, match):
    with pytest.raises(ConfigError, match=match):
        load_config(CONFIGS / "quick.toml", [override])


def test_bad_files(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text("name = [")
    with pytest.raises(ConfigError, match="bad.toml: not valid TOML"):
        load_config(p)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")
    p.write_text('[[schedulers]]\nname = "no-such-scheduler"\n')
    with pytest.raises(ConfigError, match=r"bad.toml: schedulers\[0\]") as err:
        load_config(p)
    assert "valid:" in str(err.value) and "promptpream" in str(err.value)
    p.write_text('[[schedulers]]\nname = "fixed"\n[[schedulers]]\nname = "fixed"\n')
    with pytest.raises(ConfigError, match="labels must be unique"):
        load_config(p)

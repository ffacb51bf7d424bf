"""Configuration: schema defaults, overrides, one-line errors naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from moleflow.cli import main
from moleflow.config import config_hash, defaults, load_config, schema
from moleflow.errors import ConfigError


def _leaves(node: dict, prefix: str = "") -> list[tuple[str, dict]]:
    out = []
    for key, child in node.get("properties", {}).items():
        if child.get("type") == "object" and "properties" in child:
            out += _leaves(child, f"{prefix}{key}.")
        else:
            out.append((f"{prefix}{key}", child))
    return out


def test_every_key_is_documented_with_a_default() -> None:
    for key, node in _leaves(schema()):
        assert node.get("description"), f"{key} has no description"
        assert "default" in node, f"{key} has no default"


def test_defaults_reproduce_method_notes() -> None:
    cfg = defaults()
    feats = cfg["features"]
    assert feats["backbone"] == "wide_resnet50_2" and feats["pretrained"] is True
    assert feats["layers"] == ["layer2", "layer3"] and feats["embed_dim"] == 768 and feats["fusion"] == "mean"
    assert feats["input_size"] == 224 and feats["grid"] is None and feats["aggregation"] == 3


def test_file_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"features": {"embed_dim": 64}, "dataset": {"categories": ["a", "b"]}}))
    cfg = load_config(path, ["features.grid=7", "dataset.kind=visa"])
    assert cfg["features"]["embed_dim"] == 64 and cfg["features"]["grid"] == 7 and cfg["dataset"]["kind"] == "visa"
    assert cfg["dataset"]["categories"] == ["a", "b"] and cfg["features"]["layers"] == ["layer2", "layer3"]
    assert config_hash(cfg) == config_hash(load_config(path, ["dataset.kind=visa", "features.grid=7"]))
    assert config_hash(cfg) != config_hash(load_config(path))


@pytest.mark.parametrize(
    "override, message",
    [
        ("features.embdim=3", "unknown config key 'features.embdim'"),
        ("bogus=1", "unknown config key 'bogus'"),
        ("features.embed_dim=-4", "config key features.embed_dim: -4 is less than the minimum"),
        ("features.fusion=max", "config key features.fusion: 'max' is not one of"),
        ("device=gpu0", "config key device:"),
        ("features.pretrained=maybe", "config key features.pretrained: 'maybe' is not of type 'boolean'"),
    ],
)
def test_bad_keys_and_values(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        load_config(overrides=[override])


def test_cli_reports_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("features:\n  embed_dim: [unclosed\n")
    assert main(["config", "show", "--config", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(bad) in err
    assert main(["config", "show", "--set", "features.nope=1"]) == 2
    assert capsys.readouterr().err.strip() == "moleflow: error: unknown config key 'features.nope'"
    assert main(["config", "show", "--config", str(tmp_path / "missing.yaml")]) == 2
    assert "config file not found" in capsys.readouterr().err
    assert main(["config", "show", "--set", "features.embed_dim=64"]) == 0
    assert "embed_dim: 64" in capsys.readouterr().out

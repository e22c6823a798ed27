"""The params contract: presets load, overrides apply, every error names file and field."""

from __future__ import annotations

import importlib.util
import sys
from datetime import datetime
from pathlib import Path

import pytest
import torch
import yaml

from tests.support.repo import REPO
from zonda.params import (
    RESOLVED_PARAMS_FILENAME,
    ModelParams,
    ParamsError,
    TimeWindow,
    apply_overrides,
    load_params,
    write_resolved,
)

PRESETS = ["local", "ci", "aifs", "graphcast"]


def _preset(tmp_path: Path, name: str = "ci", edit=None) -> Path:
    raw = yaml.safe_load((REPO / "params" / f"{name}.yaml").read_text())
    if edit:
        edit(raw)
    path = tmp_path / f"{name}-edited.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_validates(name: str) -> None:
    params = load_params(REPO / "params" / f"{name}.yaml")
    assert params.name == name
    assert params.data.splits.test.days >= params.evaluation.lead_days


def test_local_preset_leaves_room_for_every_stage() -> None:
    p = load_params(REPO / "params" / "local.yaml")
    assert p.data.source.kind == "heldsuarez"
    assert p.data.splits.test.days >= 60, "held-out test period must cover >= 60 days"
    assert p.data.splits.train.days > p.data.splits.validation.days > 0


def test_aifs_preset_is_the_cluster_shape() -> None:
    p = load_params(REPO / "params" / "aifs.yaml")
    assert p.model.processor == "graph_transformer"
    assert len(p.data.levels) == 13
    assert p.training.num_nodes * p.training.devices > 1
    train = p.runtime.resources.train
    assert train.accelerator_type == "nvidia.com/gpu" and train.accelerator_count >= 1
    assert train.tolerations and train.node_selector


def test_dotted_overrides_parse_yaml_values() -> None:
    p = load_params(REPO / "params" / "ci.yaml", ["training.lr=3e-4", "data.levels=[850,500]", "model.processor=transformer"])
    assert p.training.lr == pytest.approx(3e-4)
    assert p.data.levels == [500, 850]  # sorted
    assert p.model.processor == "transformer"


def test_year_range_window_is_inclusive_of_whole_years() -> None:
    w = TimeWindow.model_validate("1994-1997")
    assert w.start == datetime(1994, 1, 1)
    assert w.end == datetime(1997, 12, 31, 18)
    w2 = TimeWindow.model_validate("2000-01-01/2000-01-31")
    assert w2.end == datetime(2000, 1, 31, 18)
    assert w2.days == pytest.approx(31.0)


def _error(path: Path, overrides=()) -> str:
    with pytest.raises(ParamsError) as info:
        load_params(path, list(overrides))
    return str(info.value)


def test_unknown_key_names_file_and_dotted_path(tmp_path: Path) -> None:
    path = _preset(tmp_path, edit=lambda r: r["training"].update({"learning_rate": 1.0}))
    msg = _error(path)
    assert str(path) in msg
    assert "training.learning_rate" in msg and "unknown key" in msg


def test_bad_type_names_the_field(tmp_path: Path) -> None:
    path = _preset(tmp_path, edit=lambda r: r["training"].update({"batch_size": "four"}))
    msg = _error(path)
    assert str(path) in msg and "training.batch_size" in msg and "'four'" in msg


def test_bad_value_names_the_field(tmp_path: Path) -> None:
    msg = _error(REPO / "params" / "ci.yaml", ["training.lr=-1"])
    assert "params/ci.yaml" in msg and "training.lr" in msg and "greater than 0" in msg


@pytest.mark.parametrize(
    "override, field, words",
    [
        ("data.variables=[temperature,relative_vorticity]", "data.variables", "unknown variable 'relative_vorticity'"),
        ("data.static=[temperature]", "data.static", "is atmospheric"),
        ("data.levels=[500,500]", "data.levels", "duplicated"),
        ("data.levels=[5000]", "data.levels", "1..1100"),
        ("graph.refinement=8", "graph.refinement", "less than or equal to 7"),
        ("model.processor=lstm", "model.processor", "'gnn'"),
        ("model.processor=transformer;model.hidden_dim=30", "model", "not divisible by num_heads"),
        ("data.splits.validation=2000-01-05/2000-01-09", "data.splits", "overlap"),
        ("data.splits.test=2000-01-10/2000-02-20", "data", "not inside data.time"),
        ("data.time=2000-01-01/2000-03-01", "data", "outside the Held-Suarez record"),
        ("data.source.kind=zarr", "data.source", "path is required"),
        ("statistics.period=1999-2000", "<root>", "statistics.period"),
        ("evaluation.headline_variables=[geopotential/700]", "<root>", "level 700 is not in data.levels"),
        ("evaluation.map_lead_days=[1.1]", "evaluation", "not multiples of 6 h"),
        ("runtime.resources.train.accelerator_count=2", "runtime.resources.train", "needs accelerator_type"),
        ("runtime.resources.train.memory_request=lots", "runtime.resources.train.memory_request", "pattern"),
        ("runtime.resources.evaluate.secrets_as_env=[{secret_name: s3, keys: {}}]", "runtime.resources.evaluate.secrets_as_env.0.keys", "at least 1 item"),
        ("training.resume_from=a.ckpt", "", ""),
    ],
)
def test_each_bad_value_is_named(override: str, field: str, words: str) -> None:
    if not field:  # a valid override, as a control: resume_from alone is fine
        load_params(REPO / "params" / "ci.yaml", override.split(";"))
        return
    msg = _error(REPO / "params" / "ci.yaml", override.split(";"))
    assert f"  {field}:" in msg, msg
    assert words in msg, msg


def test_conflicting_starts_are_rejected() -> None:
    msg = _error(REPO / "params" / "ci.yaml", ["training.resume_from=a.ckpt", "training.warm_start_from=w.safetensors"])
    assert "training:" in msg and "at most one of" in msg


def test_target_must_import_and_kwargs_must_fit() -> None:
    msg = _error(REPO / "params" / "ci.yaml", ["training.optimizer={_target_: torch.optim.NoSuchOpt}"])
    assert "training.optimizer" in msg and "NoSuchOpt" in msg
    msg = _error(REPO / "params" / "ci.yaml", ["training.optimizer={_target_: torch.optim.AdamW, betaz: [0.9, 0.9]}"])
    assert "training.optimizer" in msg and "betaz" in msg
    msg = _error(REPO / "params" / "ci.yaml", ["training.loss={_target_: nomodule_xyz.Loss}"])
    assert "training.loss" in msg and "nomodule_xyz" in msg


def test_target_kwargs_reach_the_class() -> None:
    p = load_params(REPO / "params" / "ci.yaml", ["training.optimizer={_target_: torch.optim.SGD, momentum: 0.5}"])
    opt = p.training.optimizer.instantiate([torch.nn.Parameter(torch.zeros(2))], lr=p.training.lr)
    assert isinstance(opt, torch.optim.SGD)
    assert opt.defaults["momentum"] == 0.5 and opt.defaults["lr"] == p.training.lr
    assert p.resolved_dict()["training"]["optimizer"] == {"_target_": "torch.optim.SGD", "momentum": 0.5}


@pytest.mark.parametrize("override", ["training.lr", "=3", "training..lr=3", "training.lr=[1,"])
def test_malformed_overrides(override: str) -> None:
    with pytest.raises(ParamsError, match="override"):
        apply_overrides({}, [override])


def test_override_of_unknown_key_is_an_error() -> None:
    msg = _error(REPO / "params" / "ci.yaml", ["trainin.lr=1"])
    assert "with overrides trainin.lr=1" in msg and "trainin:" in msg and "unknown key" in msg


def test_yaml_problems_name_the_file(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("data: [unclosed\n")
    assert str(broken) in _error(broken) and "not valid YAML" in _error(broken)
    listy = tmp_path / "list.yaml"
    listy.write_text("- a\n- b\n")
    assert "top level must be a mapping" in _error(listy)
    assert "params file not found" in _error(tmp_path / "missing.yaml")


def test_missing_required_section_is_named(tmp_path: Path) -> None:
    path = _preset(tmp_path, edit=lambda r: r.pop("data"))
    msg = _error(path)
    assert "  data: Field required" in msg


def test_resolved_params_round_trip(tmp_path: Path) -> None:
    p = load_params(REPO / "params" / "aifs.yaml", ["training.lr=1e-4"])
    path = write_resolved(p, tmp_path)
    assert path.name == RESOLVED_PARAMS_FILENAME
    again = load_params(path)
    assert again == p
    assert again.section_hash("data") == p.section_hash("data")
    assert again.section_hash("training") != load_params(REPO / "params" / "aifs.yaml").section_hash("training")


@pytest.mark.parametrize("text,expected", [("on", "on"), ("off", "off"), ("auto", "auto"), ("'on'", "on")])
def test_fused_kernels_on_off_survive_yaml_booleans(text, expected):
    """YAML 1.1 turns a bare on/off into true/false; the schema takes them back for the words."""
    raw = yaml.safe_load(f"fused_kernels: {text}")
    assert ModelParams(**raw).fused_kernels == expected


def test_a_torch_target_waits_for_the_image_that_has_torch(monkeypatch) -> None:
    """zonda-data (no torch) loads the whole params for snapshot and statistics; a typo still fails elsewhere."""
    for name in ("torch", "torch.optim"):  # as if not installed: `import torch.optim` fails
        monkeypatch.setitem(sys.modules, name, None)
    assert importlib.util.find_spec("torch") is None
    for name in [m for m in sys.modules if m.startswith("zonda.training")]:  # re-imported: they import torch
        monkeypatch.delitem(sys.modules, name)
    params = load_params(REPO / "params" / "ci.yaml")
    assert params.training.optimizer.target == "torch.optim.AdamW"
    assert params.training.loss.target.startswith("zonda.training.losses.")
    msg = _error(REPO / "params" / "ci.yaml", ["training.loss={_target_: nomodule_xyz.Loss}"])
    assert "training.loss" in msg and "cannot import module 'nomodule_xyz'" in msg

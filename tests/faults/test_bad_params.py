"""Bad params: non-finite numbers, budgets that train nothing, unreadable files, a diverging run.

Each is refused with a message naming the field or file (exit status 2 from the
CLI), before any heavy compute, and leaves no artifact that looks complete.
"""

from __future__ import annotations

import pytest

from tests.support import training_builders as support
from tests.support.repo import REPO
from zonda.cli import EXIT_BAD_INPUT, build_parser, main
from zonda.params import ParamsError, load_params
from zonda.training.errors import NonFiniteLossError


@pytest.mark.parametrize(
    "override, field",
    [
        ("training.lr=inf", "training.lr"),
        ("training.lr=-inf", "training.lr"),
        ("training.lr=nan", "training.lr"),
        ("training.lr=.nan", "training.lr"),
        ("training.gradient_clip.value=inf", "training.gradient_clip.value"),
        ("graph.encoder_radius_factor=nan", "graph.encoder_radius_factor"),
        ("training.optimizer={_target_: torch.optim.AdamW, weight_decay: .inf}", "training.optimizer"),
        ("training.optimizer={_target_: torch.optim.AdamW, betas: [0.9, .nan]}", "training.optimizer"),
    ],
)
def test_non_finite_numbers_are_refused_naming_the_field(override, field):
    with pytest.raises(ParamsError) as info:
        load_params(REPO / "params" / "ci.yaml", [override])
    assert f"  {field}:" in str(info.value) and "finite" in str(info.value)


@pytest.mark.parametrize(
    "override, field",
    [("training.max_steps=0", "training.max_steps"), ("training.limit_train_batches=0", "training.limit_train_batches"),
     ("training.limit_train_batches=0.0", "training.limit_train_batches"),
     ("training.limit_train_batches=-2", "training.limit_train_batches")],
)
def test_a_budget_of_no_training_step_is_refused(override, field):
    with pytest.raises(ParamsError, match=rf"  {field}: .*(no step|positive)"):
        load_params(REPO / "params" / "ci.yaml", [override])


def test_a_diverging_run_stops_naming_step_and_loss_and_leaves_no_model():
    out = support.new_dir("diverging")
    support.run_training(out)  # a complete earlier run in the same directory
    assert (out / "manifest.json").is_file() and (out / "weights.safetensors").is_file()
    # Adam moves every weight by about lr per step: step 0 is finite, step 1's loss overflows.
    with pytest.raises(NonFiniteLossError, match=r"loss is (nan|inf) at global step [1-9]\d* \(epoch 0, batch \d+\)"):
        support.run_training(out, *support.MULTI_STEP, "training.limit_train_batches=4", "training.lr=1e30",
                             "training.gradient_clip.value=null")
    for name in ("manifest.json", "weights.safetensors", "model.json", "history.json"):
        assert not (out / name).exists(), name


def test_a_diverging_run_exits_2_with_one_line(tmp_path, capsys):
    a = support.artifacts()
    params = tmp_path / "params.yaml"
    params.write_text(support.params().to_yaml())
    rc = main(["train", "--params", str(params), "--snapshot", str(a["snapshot"]), "--statistics", str(a["statistics"]),
               "--graph", str(a["graph"]), "--out", str(tmp_path / "model"), "--no-mlflow", "-q",
               *support.MULTI_STEP, "training.limit_train_batches=4", "training.lr=1e30", "training.gradient_clip.value=null"])
    err = capsys.readouterr().err
    assert rc == EXIT_BAD_INPUT
    assert err.strip().splitlines()[-1].startswith("zonda train: error: training diverged: loss is") and "Traceback" not in err
    assert not (tmp_path / "model" / "manifest.json").exists()


@pytest.mark.parametrize("content", [b"name: ci\n\xff\xfe caf\xe9\n", "name: café\n".encode("latin-1")], ids=["binary", "latin-1"])
def test_a_params_file_that_is_not_utf8_is_named(tmp_path, content):
    path = tmp_path / "params.yaml"
    path.write_bytes(content)
    with pytest.raises(ParamsError, match=rf"{path}: not UTF-8 text \(byte 0x[0-9a-f]{{2}} at offset \d+\)"):
        load_params(path)


def test_overrides_are_accepted_after_the_options(tmp_path, capsys):
    """``zonda <stage> --out DIR key=value`` as well as ``key=value --out DIR``."""
    args = build_parser().parse_args(
        ["snapshot", "--params", "params/ci.yaml", "--out", str(tmp_path), "data.levels=[500]", "--no-mlflow"]
    )
    assert args.overrides == ["data.levels=[500]"] and args.out == tmp_path and args.no_mlflow
    args = build_parser().parse_args(["promote", "zonda", "3", "a.b=1", "--reason", "retrained", "c.d=2"])
    assert (args.name, args.version, args.reason, args.overrides) == ("zonda", "3", "retrained", ["a.b=1", "c.d=2"])
    assert main(["params", "show", "--params", str(REPO / "params" / "ci.yaml"), "-q", "training.lr=3e-4"]) == 0
    assert "lr: 0.0003" in capsys.readouterr().out

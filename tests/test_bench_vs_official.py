"""experiments/bench_vs_official.py: plan, ratio table and a tiny run against a stub official
models.py (the real official code is not vendored; spec §4.1 describes the step it times)."""

from __future__ import annotations

import json
import sys

import pytest
from experiment_scripts import load_experiment

# The official interface the harness relies on (models.py:191-385): SeqJEPA_Transforms(img_size,
# ema, **kwargs) with emb_dim, res_out_dim, forward(...) -> (loss, agg_out, z1, z2) and
# update_moving_average(). A tiny stand-in with that interface; it records its calls.
STUB_MODELS = """
import json, os
import torch
from torch import nn

CALLS = {"forward": 0, "ema": 0}


class SeqJEPA_Transforms(nn.Module):
    def __init__(self, img_size, ema, **kwargs):
        super().__init__()
        self.kwargs = kwargs
        self.res_out_dim = 8
        self.emb_dim = 8 + kwargs["act_projdim"]
        self.encoder = nn.Sequential(nn.Conv2d(3, 8, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.action_proj = nn.Linear(kwargs["act_latentdim"], kwargs["act_projdim"])
        self.predictor = nn.Linear(self.emb_dim, 8)

    def update_moving_average(self):
        CALLS["ema"] += 1
        with open(os.environ["STUB_LOG"], "w") as f:
            json.dump({**CALLS, "kwargs": self.kwargs}, f)

    def forward(self, x_obs, x_pred, act_lat_obs, act_lat_pred, rel_latents=None):
        CALLS["forward"] += 1
        CALLS["rel_latents"] = rel_latents is not None
        z = self.encoder(x_obs.flatten(0, 1)).reshape(x_obs.shape[0], x_obs.shape[1], 8)
        actions = rel_latents[:, -1] if rel_latents is not None else act_lat_pred
        agg_out = torch.cat([z.mean(1), self.action_proj(actions)], dim=-1)
        target = self.encoder(x_pred).detach()
        loss = 1 - nn.functional.cosine_similarity(self.predictor(agg_out), target).mean()
        return loss, agg_out, z[:, 0], z[:, 1]
"""


@pytest.fixture(scope="module")
def bench():
    module = load_experiment("bench_vs_official")
    return module


def test_plan_alternates_configurations_within_each_repeat(bench, tmp_path):
    (tmp_path / "models.py").write_text("class SeqJEPA_Transforms: pass\n")
    args = bench.parse_args([f"--official_src={tmp_path}", "--repeats=2", "--recipes=cifar100"])
    order = [(framework, mode, dtype) for _, _, _, framework, mode, dtype in bench.plan(args)]
    one_round = [
        ("torch", "eager", "float32"),
        ("torch", "compile", "float32"),
        ("jax", "jit", "float32"),
        ("jax", "jit", "bfloat16"),
    ]
    assert order == one_round * 2
    assert {entry[:3] for entry in bench.plan(args)} == {("cifar100", 64, 32)}
    with pytest.raises(SystemExit):
        bench.parse_args([f"--official_src={tmp_path}", "--torch_modes=eager,jit"])
    with pytest.raises(FileNotFoundError, match="hafezgh/seq-jepa"):
        bench.official_src_dir(str(tmp_path / "nowhere"))
    assert bench.official_src_dir(str(tmp_path)) == str(tmp_path)


def test_ratio_table_uses_the_median_over_repeats_against_official_eager(bench):
    def record(framework, mode, dtype, step_s):
        return {"recipe": "3diebench", "batch": 32, "framework": framework, "mode": mode,
                "dtype": dtype, "step_s_median": step_s, "first_step_s": 1.0,
                "peak_rss_mib": 100.0}  # fmt: skip

    records = [
        record("torch", "eager", "float32", 4.0),
        record("torch", "eager", "float32", 6.0),
        record("torch", "eager", "float32", 5.0),
        record("jax", "jit", "float32", 2.5),
    ]
    lines = bench.ratio_table(records).splitlines()
    assert len(lines) == 4
    assert lines[2].split()[-2:] == ["1.00", "-"]  # median 5.0 s, no compile measurement
    assert lines[3].split()[-2:] == ["2.00", "-"]  # 5.0 s / 2.5 s
    assert "5.0000" in lines[2] and "2.5000" in lines[3]


def test_tiny_side_by_side_run_with_a_stub_official_model(bench, tmp_path, monkeypatch, capsys):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "models.py").write_text(STUB_MODELS)
    log = tmp_path / "stub_log.json"
    monkeypatch.setenv("STUB_LOG", str(log))
    records = bench.main(
        [
            f"--official_src={tmp_path}",
            f"--torch_python={sys.executable}",
            "--recipes=3diebench",
            "--batch=2",
            "--image_size=16",
            "--width=4",
            "--stage_sizes=1,1",
            "--steps=2",
            "--repeats=1",
            "--torch_modes=eager",
            "--jax_dtypes=float32",
            "--threads=1",
            "--no_xla_cpu_fast",
        ]
    )
    out = capsys.readouterr().out
    assert [(r["framework"], r["mode"]) for r in records] == [("torch", "eager"), ("jax", "jit")]
    for record in records:
        assert tuple(record)[: len(bench.RECORD_KEYS)] == bench.RECORD_KEYS
        assert (record["recipe"], record["batch"], record["image_size"]) == ("3diebench", 2, 16)
        assert record["step_s_median"] > 0 and record["first_step_s"] > 0
        assert record["peak_rss_mib"] > 0 and record["threads"] == 1 and record["device"]
        assert json.loads(next(line for line in out.splitlines() if line.startswith("{")))
    assert records[1]["width"] == 4
    # The official model got main_transformed_views.py's kwargs for 3DIEBench and was stepped
    # 1 + 2 times through the rel_latents path, with one EMA update per step.
    stub = json.loads(log.read_text())
    assert (stub["forward"], stub["ema"], stub["rel_latents"]) == (3, 3, True)
    assert stub["kwargs"]["act_latentdim"] == 4 and stub["kwargs"]["num_classes"] == 55
    assert stub["kwargs"]["cifar_resnet"] is False and stub["kwargs"]["act_projdim"] == 128
    assert "x eager" in out

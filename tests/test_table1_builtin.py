"""experiments/table1_builtin.py: the summary arithmetic and claims on a hand-made ledger, and a
tiny resumable run of three rows."""

from __future__ import annotations

import json
import os

import pytest
from experiment_scripts import load_experiment


@pytest.fixture(scope="module")
def table():
    return load_experiment("table1_builtin")


def line(row: str, seed: int, **probes) -> dict:
    return {"row": row, "seed": seed, "wall_minutes": 5.0, "train_minutes": 4.0, "probes": probes}


def test_summary_is_the_mean_and_std_over_seeds_and_claims_are_checked(table):
    r2, geo = "relative_rotation_r2_uniform", "relative_rotation_geodesic_deg"
    ledger = [
        line("seqjepa", 42, agg_m3_accuracy=90.0, **{r2: 0.50, geo: 20.0}),
        line("seqjepa", 43, agg_m3_accuracy=92.0, **{r2: 0.54, geo: 18.0}),
        line("seqjepa_no_act", 42, **{r2: 0.40, geo: 21.0}),
        line("seqjepa_no_act", 43, **{r2: 0.42, geo: 19.0}),
        line("simclr", 42, encoder_accuracy=93.0, **{r2: 0.1, geo: 30.0}),
        line("sie", 42, encoder_accuracy=80.0, **{r2: 0.3, geo: 25.0}),
    ]
    summary = table.summarise(ledger)
    # mean, sample std (ddof = 1), seeds
    assert summary["seqjepa"]["agg_m3_accuracy"] == pytest.approx((91.0, 2**0.5, 2))
    assert summary["seqjepa"]["wall_minutes"] == (5.0, 0.0, 2)
    assert summary["simclr"]["encoder_accuracy"] == (93.0, 0.0, 1)
    unknown_wall = table.summarise([*ledger, {**line("simclr", 43), "wall_minutes": None}])
    assert unknown_wall["simclr"]["wall_minutes"] == (5.0, 0.0, 1)
    text = "\n".join(table.claims(summary))
    # (a) 91 % < SimCLR's 93 % on one SimCLR seed: provisional. (b) R² gain 0.11 > 2 × 0.028;
    # geodesic gain 1.0° < 2 × 1.41°: a tie. (c) SIE and seq-JEPA beat SimCLR on both.
    assert "(a) seq-JEPA's aggregate top-1 (M_val = 3) is at least that of the invariant " in text
    assert (
        "does not hold, provisionally (1 seed) (91.0 ± 1.4 % vs the best, simclr, 93.0 ± 0.0 %)"
        in text
    )
    assert f"({r2}) by more than twice the seed spread: holds" in text
    assert f"({geo}) by more than twice the seed spread: a tie within twice the seed" in text
    assert text.count("(c) every equivariant method (seqjepa, sie)") == 2
    assert (
        "holds, provisionally (1 seed) (equivariant mean 0.410, invariant mean 0.100; weakest "
        "equivariant sie 0.300, strongest invariant simclr 0.100)" in text
    )
    # One seed per row leaves (b) without a spread to compare the gain with.
    single = table.claims(table.summarise(ledger[::2]))
    assert any("seed spread: undecided, 1 seed" in claim for claim in single)
    markdown = table.table_markdown(summary)
    assert "| seq-JEPA | 2 | – | – | 91.0 ± 1.4 | – | 0.52 ± 0.03 |" in markdown


@pytest.mark.parametrize(
    "simclr_top1,sie_r2,claim_a,claim_c",
    [
        # (a): 91 ± 1.41 vs 93 ± 0: the 2-point gap is within 2 × 1.41. (c): SIE 0.30 ± 0 vs
        # SimCLR 0.10 ± 0 is a gap beyond any spread.
        (93.0, 0.30, "a tie within twice the seed spread", "holds (equivariant"),
        (95.0, 0.09, "does not hold (91.0", "a tie within twice the seed spread"),
        (88.0, 0.00, "holds (91.0", "does not hold (equivariant"),
    ],
)
def test_claims_weigh_differences_against_the_seed_spread(
    table, simclr_top1, sie_r2, claim_a, claim_c
):
    r2 = "relative_rotation_r2_uniform"
    ledger = [
        line("seqjepa", 42, agg_m3_accuracy=90.0, **{r2: 0.50}),
        line("seqjepa", 43, agg_m3_accuracy=92.0, **{r2: 0.54}),
        *(line("simclr", seed, encoder_accuracy=simclr_top1, **{r2: 0.1}) for seed in (42, 43)),
        line("sie", 42, encoder_accuracy=80.0, **{r2: sie_r2 - 0.01}),
        line("sie", 43, encoder_accuracy=80.0, **{r2: sie_r2 + 0.01}),
    ]
    a, c = table.claims(table.summarise(ledger))
    assert a.startswith("(a)") and claim_a in a
    assert c.startswith("(c)") and claim_c in c


def test_tiny_table_is_written_and_resumes_without_recomputing(table, tmp_path, monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", os.environ.get("XLA_FLAGS", ""))
    out, work = tmp_path / "results", tmp_path / "work"
    argv = [
        f"--workdir={work}",
        f"--output_dir={out}",
        "--variant=tiny",
        "--epochs=1",
        "--max_seeds=1",
        f"--data_dir={tmp_path}/data",
        "--only=seqjepa,simclr,random_init",
    ]
    ledger = table.main(argv)
    assert [(entry["row"], entry["seed"]) for entry in ledger] == [
        ("seqjepa", 42),
        ("simclr", 42),
        ("random_init", 42),
    ]
    for entry in ledger:
        assert "relative_rotation_geodesic_deg_seed_std" in entry["probes"]  # 3 probe seeds
    assert "agg_m3_accuracy" in ledger[2]["probes"]  # the random seq-JEPA has an aggregate
    markdown = (out / "table1_builtin.md").read_text()
    assert "| SimCLR | 1 |" in markdown and "| predict-the-mean floor |" in markdown
    assert "(a) seq-JEPA's aggregate top-1" in markdown
    assert (out / "table1_builtin.png").stat().st_size > 0
    saved = [json.loads(x) for x in (out / "table1_builtin.jsonl").read_text().splitlines()]
    assert saved == ledger

    def forbidden(*args, **kwargs):
        raise AssertionError("a finished (row, seed) was recomputed")

    monkeypatch.setattr(table, "run_one", forbidden)
    assert table.main(argv) == ledger
    # A row interrupted after its checkpoints were written resumes from them, and its ledger line
    # says so instead of a wall time that would only count the resumed part.
    monkeypatch.undo()
    monkeypatch.setenv("XLA_FLAGS", os.environ.get("XLA_FLAGS", ""))
    (work / "table1_builtin.jsonl").write_text(
        "".join(json.dumps(entry) + "\n" for entry in ledger if entry["row"] != "simclr")
    )
    first_simclr = ledger[1]
    ledger = table.main(argv)
    resumed = next(entry for entry in ledger if entry["row"] == "simclr")
    assert resumed["wall_minutes"] is None and resumed["resumed_from_step"] > 0
    assert resumed["probes"] == first_simclr["probes"]  # the same checkpoint, the same probes
    # A fresh workdir (another machine) continues from the ledger in --output_dir.
    fresh = [arg.replace(str(work), str(tmp_path / "elsewhere")) for arg in argv]
    assert table.main(fresh) == ledger
    assert (tmp_path / "elsewhere" / "table1_builtin.jsonl").read_text() == (
        out / "table1_builtin.jsonl"
    ).read_text()
    # Another training budget is refused before any work: its (row, seed) pairs would count as
    # done, and a rescore would train them further.
    assert {entry["num_epochs"] for entry in ledger} == {1}
    assert "Training budget: 1 epochs per run." in (out / "table1_builtin.md").read_text()
    with pytest.raises(SystemExit, match="num_epochs \\['1'\\] .*not 2: one table, one training"):
        table.main([*argv, "--epochs=2"])
    # Another probe protocol is refused until the ledger is rescored; rescoring needs the runs'
    # checkpoints (named before any work), trains nothing and keeps every time in the ledger.
    assert {table.feature_scaling_of(entry) for entry in ledger} == {"global"}  # the default
    other = [*argv, "--feature_scaling=per_feature"]
    with pytest.raises(SystemExit, match="one table, one probe protocol"):
        table.main(other)
    elsewhere = [arg.replace(str(work), str(tmp_path / "no_runs")) for arg in other]
    with pytest.raises(SystemExit, match="--rescore needs the finished runs' checkpoints, and 2"):
        table.main([*elsewhere, "--rescore"])
    from seqjepa_jax import train

    train_and_evaluate = train.train_and_evaluate

    def score_only(*args, **kwargs):
        results = train_and_evaluate(*args, **kwargs)
        assert results["steps_trained_this_run"] == 0, "rescoring trained"
        return results

    monkeypatch.setattr(train, "train_and_evaluate", score_only)
    rescored = table.main([*other, "--rescore"])
    assert [table.feature_scaling_of(entry) for entry in rescored] == ["per_feature"] * 3
    for old, new in zip(ledger, rescored):
        unchanged = [k for k in old if k not in ("probes", "feature_scaling")]
        assert [new[k] for k in unchanged] == [old[k] for k in unchanged]
        assert new.keys() == old.keys()
        assert new["probes"].keys() == old["probes"].keys()
        assert new["probes"] != old["probes"]  # the probes really were fitted again
    assert table.main(other) == rescored  # nothing left to rescore or train

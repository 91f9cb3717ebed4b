"""Grouping runs into configurations, statistics against the baseline, best values, Pareto front."""

import json
import statistics

import pytest
from helpers import make_sweep, write_run

from poolbench.results import recipe_text
from poolbench.sweep.aggregate import summarize, to_dict
from poolbench.sweep.stats import holm_adjust, paired_p_value, t_quantile


def test_rows_have_mean_ci_and_n_over_seeds(tmp_path):
    summary = summarize([make_sweep(tmp_path)])
    rows = {row.config["pool"]: row for row in summary.rows}
    assert [row.config["pool"] for row in summary.rows] == ["max", "avg", "global"]
    acc = rows["avg"].stats["accuracy"]
    values = [0.90, 0.91, 0.92]
    assert acc["n"] == 3 and acc["mean"] == pytest.approx(statistics.fmean(values))
    assert acc["ci95"] == pytest.approx(t_quantile(0.975, 2) * statistics.stdev(values) / 3 ** 0.5)
    assert rows["global"].n == 2 and len(rows["global"].runs) == 3


def test_difference_from_max_and_significance(tmp_path):
    summary = summarize([make_sweep(tmp_path)])
    rows = {row.config["pool"]: row for row in summary.rows}
    avg = rows["avg"].stats["accuracy"]
    assert avg["diff"] == pytest.approx(0.11) and avg["significant"] and avg["p_value"] < 0.05
    assert "diff" not in rows["max"].stats["accuracy"]  # the baseline itself
    params = rows["global"].stats["params"]
    assert params["diff"] == -50 and params["p_value"] is None and not params["significant"]


def test_best_per_column_and_pareto_front(tmp_path):
    summary = summarize([make_sweep(tmp_path)])
    rows = {row.config["pool"]: row for row in summary.rows}
    assert "accuracy" in rows["avg"].best and "consistency" in rows["global"].best
    assert "params" in rows["global"].best and "flip_rate_1px" in rows["global"].best
    # avg beats max on accuracy, consistency and speed: max is dominated; global keeps consistency.
    assert rows["avg"].pareto and rows["global"].pareto and not rows["max"].pareto


def test_failed_job_is_listed_with_its_first_error_line(tmp_path):
    summary = summarize([make_sweep(tmp_path)])
    assert [run.path.name for run in summary.failed] == ["global_2"]
    failed = to_dict(summary)["failed"][0]
    assert failed["error"] == "RunError: Training diverged in epoch 1"
    assert failed["status"] == "failed" and failed["seed"] == 2 and failed["label"] == "global seed=2"


def test_job_without_metrics_counts_as_killed_and_joins_its_configuration(tmp_path):
    make_sweep(tmp_path)
    killed = tmp_path / "avg_3" / ".hydra"
    killed.mkdir(parents=True)
    (killed / "config.yaml").write_text("pool: {name: avg}\ndata: {name: shapes}\nseed: 3\n")
    (killed / "overrides.yaml").write_text("- pool=avg\n- seed=3\n- data=shapes\n")
    summary = summarize([tmp_path])
    avg = next(row for row in summary.rows if row.config["pool"] == "avg")
    assert avg.n == 3 and len(avg.runs) == 4
    record = next(run for run in summary.failed if run.seed == 3)
    assert record.status == "killed" and "no metrics.json" in record.error
    failed = {entry["label"]: entry for entry in to_dict(summary)["failed"]}
    assert failed["avg seed=3"]["status"] == "killed" and failed["global seed=2"]["status"] == "failed"


def test_configuration_is_every_override_but_the_seed(tmp_path):
    for seed in (0, 1):
        write_run(tmp_path / f"a{seed}", "max", seed, 0.8, extra=("train.lr=0.1",))
        write_run(tmp_path / f"b{seed}", "max", seed, 0.9, extra=("train.lr=0.2",))
        write_run(tmp_path / f"c{seed}", "avg", seed, 0.9, extra=("train.lr=0.2",))
    summary = summarize([tmp_path])
    labels = [row.label for row in summary.rows]
    assert labels == ["max train.lr=0.1", "max train.lr=0.2", "avg train.lr=0.2"]
    assert all(row.n == 2 for row in summary.rows)
    assert summary.common == {"data": "shapes", "device": "cpu"}
    avg = summary.rows[2].stats["accuracy"]
    assert avg["diff"] == pytest.approx(0.0)  # compared with max at the same lr, not lr=0.1


def test_a_seed_run_twice_counts_once_newest_complete_kept(tmp_path):
    old = write_run(tmp_path / "one" / "0", "max", 0, 0, status="failed", error="boom")
    new = write_run(tmp_path / "two" / "0", "max", 0, 0.8)
    summary = summarize([tmp_path / "one", tmp_path / "two"])
    row = summary.rows[0]
    assert row.n == 1 and [r.path for r in row.runs] == [new.resolve()]
    assert not summary.failed and any(str(old.resolve()) in note for note in summary.notes)


def test_single_run_directory_and_missing_baseline(tmp_path):
    write_run(tmp_path / "run", "avg", 0, 0.7)
    summary = summarize([tmp_path / "run"])
    assert summary.rows[0].n == 1 and summary.rows[0].stats["accuracy"]["ci95"] is None
    assert any("no complete pool=max" in note for note in summary.notes)


def _edit_metrics(run_dir, **changes):
    path = run_dir / "metrics.json"
    metrics = json.loads(path.read_text())
    metrics.update(changes)
    path.write_text(json.dumps(metrics))


def test_paired_test_where_seeds_match_welch_where_they_differ(tmp_path):
    for seed, (a_max, a_avg) in enumerate([(0.80, 0.81), (0.85, 0.862), (0.75, 0.761)]):
        write_run(tmp_path / f"max_{seed}", "max", seed, a_max)
        write_run(tmp_path / f"avg_{seed}", "avg", seed, a_avg)
        write_run(tmp_path / f"lp_{seed}", "lp", seed + 10, a_avg)  # other seeds: nothing to pair with
    summary = summarize([tmp_path])
    rows = {row.config["pool"]: row for row in summary.rows}
    avg, lp = rows["avg"].stats["accuracy"], rows["lp"].stats["accuracy"]
    assert avg["test"] == "paired" and lp["test"] == "welch"
    assert avg["p_value"] == pytest.approx(paired_p_value([0.81, 0.862, 0.761], [0.80, 0.85, 0.75]))
    # the same numbers: pairing removes the seed-to-seed spread that hides the difference unpaired
    assert avg["p_value"] < 0.05 < lp["p_value"]
    assert summary.tests["paired"] >= 1 and summary.tests["welch"] >= 1


def test_stars_come_after_holms_correction_over_the_whole_table(tmp_path):
    # paired differences: accuracy 0.010, 0.016, 0.013 (p = 0.017); consistency and flip rate p = 0.035
    for seed, (a_max, a_avg) in enumerate([(0.80, 0.81), (0.85, 0.866), (0.75, 0.763)]):
        write_run(tmp_path / f"max_{seed}", "max", seed, a_max, consistency=0.7 + seed / 50)
        write_run(tmp_path / f"avg_{seed}", "avg", seed, a_avg, consistency=0.71 + seed / 40)
    summary = summarize([tmp_path])
    tested = [e for row in summary.rows for e in row.stats.values() if e.get("p_value") is not None]
    assert len(tested) >= 2
    assert [e["p_holm"] for e in tested] == pytest.approx(holm_adjust([e["p_value"] for e in tested]))
    assert all(e["significant"] == (e["p_holm"] < 0.05) for e in tested)
    accuracy = next(row for row in summary.rows if row.config["pool"] == "avg").stats["accuracy"]
    assert accuracy["p_value"] < 0.05 and not accuracy["significant"]  # significant alone, not after Holm


def test_bold_only_when_the_interval_clears_the_runner_up_else_every_tied_row(tmp_path):
    for seed in range(3):
        write_run(tmp_path / f"max_{seed}", "max", seed, 0.80 + seed / 100)   # 0.81 +- 0.025
        write_run(tmp_path / f"avg_{seed}", "avg", seed, 0.805 + seed / 100)  # overlaps max: a tie
        write_run(tmp_path / f"lp_{seed}", "lp", seed, 0.50 + seed / 100)     # far below
    rows = {row.config["pool"]: row for row in summarize([tmp_path]).rows}
    assert "accuracy" in rows["avg"].best and "accuracy" in rows["max"].best
    assert "accuracy" not in rows["lp"].best
    for seed in range(3):
        write_run(tmp_path / f"avg_{seed}", "avg", seed, 0.90 + seed / 100)   # now clearly ahead
    rows = {row.config["pool"]: row for row in summarize([tmp_path]).rows}
    assert "accuracy" in rows["avg"].best and "accuracy" not in rows["max"].best


def test_few_seeds_flagged_and_intervals_clipped_to_the_valid_range(tmp_path):
    write_run(tmp_path / "max_0", "max", 0, 0.99, consistency=0.999)
    write_run(tmp_path / "max_1", "max", 1, 1.0, consistency=1.0)
    summary = summarize([tmp_path])
    row = summary.rows[0]
    assert row.few_seeds and to_dict(summary)["rows"][0]["few_seeds"]
    acc = row.stats["accuracy"]
    assert acc["mean"] + acc["ci95"] > 1  # the t-interval of n = 2 runs past 100%
    assert acc["ci_high"] == 1.0 and acc["ci_low"] == pytest.approx(acc["mean"] - acc["ci95"])
    assert row.shift_accuracy["0"]["ci_high"] <= 1.0


def test_speed_ranks_only_from_the_quiet_timing_pass(tmp_path):
    make_sweep(tmp_path)
    summary = summarize([tmp_path])
    assert not summary.quiet_timing and not any("infer_images_per_s" in row.best for row in summary.rows)
    assert any("rank nothing" in note for note in summary.notes)
    assert summary.rows[0].stats["infer_images_per_s"]["source"] == "jobs (not ranked)"
    # the timing pass says max is fastest (the jobs said avg); rounds pair with rounds
    timing = {"configurations": [
        {"config": row.config, "infer_images_per_s": speeds, "train_images_per_s": [s / 3 for s in speeds]}
        for row, speeds in zip(summary.rows, ([2000, 2010, 1990], [1500, 1490, 1510], [300, 310, 290]))]}
    (tmp_path / "timing.json").write_text(json.dumps(timing))
    summary = summarize([tmp_path])
    rows = {row.config["pool"]: row for row in summary.rows}
    assert summary.quiet_timing and rows["max"].stats["infer_images_per_s"]["mean"] == pytest.approx(2000)
    assert rows["avg"].stats["infer_images_per_s"]["test"] == "paired"
    assert "infer_images_per_s" in rows["max"].best and rows["max"].pareto  # fastest: on the front again
    assert to_dict(summary)["pareto_metrics"] == ["accuracy", "consistency", "infer_images_per_s"]


def test_timing_that_misses_a_configuration_ranks_nothing(tmp_path):
    make_sweep(tmp_path)
    first = summarize([tmp_path]).rows[0]
    timing = {"configurations": [{"config": first.config, "infer_images_per_s": [1.0, 2.0],
                                  "train_images_per_s": [1.0, 2.0]}]}
    (tmp_path / "timing.json").write_text(json.dumps(timing))
    assert not summarize([tmp_path]).quiet_timing


def test_mixed_hardware_and_the_recipe_are_named(tmp_path):
    make_sweep(tmp_path)
    protocol = {"train": {"epochs": 2, "batch_size": 128, "optimizer": "SGD Nesterov", "lr": 0.1,
                          "schedule": "one-cycle linear", "warmup_fraction": 0.25, "momentum": 0.9,
                          "weight_decay": 5e-4, "label_smoothing": 0.1, "augment": {"shift": 0, "flip": False},
                          "amp": "auto"},
                "eval": {"draws": 4, "max_shift": 3, "shift_pairs": 5, "shift_mode": "circular", "seed": 1234}}
    for run_dir in tmp_path.glob("*_*"):
        cpu = "CPU B" if run_dir.name == "avg_1" else "CPU A"
        _edit_metrics(run_dir, environment={"cpu": cpu, "gpu": None}, protocol=protocol)
    summary = summarize([tmp_path])
    assert summary.recipes == [recipe_text(protocol)]
    assert "2 epochs, batch 128" in summary.recipes[0] and "4 seeded draws" in summary.recipes[0]
    assert any("different hardware" in note and "CPU B (avg)" in note for note in summary.notes)


def test_a_lead_inside_the_noise_knocks_no_row_off_the_pareto_front(tmp_path):
    for seed in range(3):  # avg ahead of max on every mean, but by less than the intervals
        write_run(tmp_path / f"max_{seed}", "max", seed, 0.90 + seed / 100, consistency=0.80 + seed / 100)
        write_run(tmp_path / f"avg_{seed}", "avg", seed, 0.905 + seed / 100, consistency=0.805 + seed / 100)
        write_run(tmp_path / f"lp_{seed}", "lp", seed, 0.60 + seed / 100, consistency=0.70 + seed / 100)
    rows = {row.config["pool"]: row for row in summarize([tmp_path]).rows}
    assert rows["max"].pareto and rows["avg"].pareto  # tied: neither clearly better
    assert not rows["lp"].pareto  # clearly worse on both

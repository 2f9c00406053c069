"""Reports, selection and deployable bundles, on one tiny real search shared by the module.

The run: MultiMNIST (256/128/128), 2 tasks, two single-task seeds per task and their
ensemble, then 3 searched trials given as points (a hard split at k=1, a
cross-stitch network, and a hard split with a useless learning rate that the median
pruner stops).

The points run one at a time, so which trials the pruner sees finished is fixed: with two
at once, the cross-stitch network sometimes finished before the hard split's second epoch
(on a loaded CI machine), and the median of that one finished trial stopped the hard split
too (its best Delta_m by then, +2.6 %, is below the cross-stitch's +4.0 % at epoch 2).
"""
from __future__ import annotations

import json
import math
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

import mtl_models as mm
import reports
import spaces
from reports._sections._cross_stitch import trial_alphas
from reports._sections._leaderboard import _why
from search import run_experiment
from search.cli import main as cli

import chromium
from conftest import make_config, make_tasks, tiny_experiment

EXPERIMENT = tiny_experiment(**{
    "name": "tiny-report",
    "license": "CC0-1.0",
    "seed": 0,
    "data": {"source": "multimnist", "n_train": 256, "n_val": 128, "n_test": 128},
    "head": {"pool_size": 2},
    "train": {"epochs": 3, "batch_size": 64, "lr": 0.01, "device": "cpu"},
    "space": {"lr": {"low": 1e-5, "high": 0.02, "log": True}},
    "search": {
        "num_trials": 3,
        "max_concurrent": 1,
        "pruner": {"name": "median", "n_startup_trials": 1, "n_warmup_steps": 1},
        "points_to_evaluate": [
            {"family": "hard_split", "split_point": 1, "lr": 0.01},
            {"family": "cross_stitch", "alpha_same": 0.9, "alpha_diff": 0.1, "lr_multiplier": 10.0, "lr": 0.01},
            {"family": "hard_split", "split_point": 1, "lr": 0.00001},
        ],
    },
    "baselines": {"ensemble": True},
})
TASKS = ("left", "right")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, ray_local) -> Path:
    root = tmp_path_factory.mktemp("reports")
    path = root / "tiny.yaml"
    path.write_text(yaml.safe_dump(EXPERIMENT, sort_keys=False))
    return run_experiment(spaces.load_experiment(path), root / "run").run_dir


@pytest.fixture(scope="module")
def report(run_dir: Path) -> Path:
    return reports.write_report(run_dir)


@pytest.fixture(scope="module")
def data(run_dir: Path) -> mm.MultiTaskData:
    return spaces.load_experiment(run_dir / "experiment.json").load_data()


# ---------------------------------------------------------------- cost (no run needed)


def test_flops_of_a_one_stage_network_are_its_convolution_and_head() -> None:
    tasks = make_tasks(1)
    config = make_config("single_task", tasks, backbone={"name": "small_cnn", "weights": None, "options": {"widths": [4]}})
    model = mm.build_model(config)
    conv = 2 * 3 * 4 * 9 * 8 * 8  # 3x3 conv, 3 -> 4 channels, at 8x8, multiply-add = 2
    head = 2 * 4 * 4  # linear 4 features -> 4 classes
    assert mm.count_flops(model, (3, 8, 8)) == conv + head


@pytest.mark.parametrize("num_tasks", [2, 3])
def test_flops_add_up_across_families(num_tasks: int) -> None:
    tasks = make_tasks(num_tasks)
    shape = (3, 8, 8)
    single = mm.count_flops(mm.build_model(make_config("single_task", tasks)), shape)
    head = 2 * 8 * 4  # one task head: 8 features -> 4 classes
    nothing_shared = mm.count_flops(mm.build_model(make_config("hard_split", tasks, split_point=0)), shape)
    all_shared = mm.count_flops(mm.build_model(make_config("hard_split", tasks, split_point=3)), shape)
    assert nothing_shared == num_tasks * single
    assert all_shared == single + (num_tasks - 1) * head
    assert mm.count_flops(mm.build_model(make_config("ensemble", tasks, ensemble_size=2)), shape) == 2 * num_tasks * single


def test_measure_cost_reports_positive_latencies_and_leaves_the_model_as_it_was() -> None:
    config = make_config("cross_stitch", make_tasks(2))
    model = mm.build_model(config).train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    cost = mm.measure_cost(model, config["input"], batch_size=16, warmup=1, repeats=3)
    assert cost.params == mm.count_parameters(model) and cost.latency_batch == 16 and cost.device == "cpu"
    assert cost.latency_ms_b1 > 0 and cost.latency_ms_bN > 0
    assert model.training and torch.equal(torch.get_rng_state(), rng)
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, state[k], rtol=0, atol=0)


@pytest.mark.parametrize(
    "delta, cost, front",
    [
        ([1.0, 2.0, 3.0], [1.0, 2.0, 3.0], [True, True, True]),
        ([3.0, 2.0, 1.0], [1.0, 2.0, 3.0], [True, False, False]),
        ([1.0, 1.0, 2.0], [1.0, 2.0, 2.0], [True, False, True]),
        ([1.0, math.nan, 0.5], [2.0, 1.0, 1.0], [True, False, True]),
    ],
)
def test_pareto_mask(delta: list[float], cost: list[float], front: list[bool]) -> None:
    frame = pd.DataFrame({"delta_m": delta, "params": cost})
    assert reports.pareto_mask(frame, "delta_m", "params").tolist() == front


@pytest.mark.parametrize(
    "status, extra, expected",
    [
        ("pruned", {"epochs_run": 2, "epochs": 5, "delta_m": -3.5}, "after epoch 2 of 5"),
        ("errored", {"error": "RuntimeError: CUDA out of memory"}, "CUDA out of memory"),
        ("finished", {}, ""),
    ],
)
def test_leaderboard_says_why_a_trial_stopped(status: str, extra: dict, expected: str) -> None:
    text, _ = _why(pd.Series({"status": status, **extra}))
    assert expected in text


# ---------------------------------------------------------------- the run's table


def test_trials_report_their_cost(run_dir: Path) -> None:
    results = pd.read_parquet(run_dir / "results.parquet")
    for column in ("flops", "latency_ms_b1", "latency_ms_bN", "latency_batch", "cost_device"):
        assert results[column].notna().all(), column
    assert (results["latency_batch"] == 64).all() and set(results["cost_device"]) == {"cpu"}
    for _, row in results.iterrows():
        config = json.loads(row["config"])
        assert row["flops"] == mm.count_flops(mm.build_model(config), (1, 36, 36))


# ---------------------------------------------------------------- post-hoc test evaluation


def test_shortlist_is_evaluated_on_test_once_and_matches_evaluate(run_dir: Path, report: Path, data) -> None:
    run = reports.load_run(run_dir)
    results = run.results.set_index("trial_id")
    assert run.has_test and run.shortlist
    evaluated = set(results.index[results["test/left/accuracy"].notna() | results["test/right/accuracy"].notna()])
    finished_single = set(results.index[(results["family"] == "single_task")])
    assert evaluated == set(run.shortlist) | finished_single | {"ensemble"}
    assert "pruned" not in set(results.loc[list(evaluated), "status"])
    best = reports.best_trial(run.results)
    model = mm.build_model(json.loads(best["config"]))
    model.load_state_dict(mm.load_checkpoint_state(best["checkpoint"])["model"])
    expected = mm.evaluate(model, data.splits["test"])
    for task in TASKS:
        assert results.loc[best["trial_id"], f"test/{task}/accuracy"] == expected[task]["accuracy"]
    # cached: a second load evaluates nothing and rewrites nothing
    cache = run_dir / reports.EVALUATIONS_FILE
    before = cache.stat().st_mtime_ns
    again = reports.load_run(run_dir)
    assert cache.stat().st_mtime_ns == before
    pd.testing.assert_frame_equal(again.results, run.results)


def test_per_class_counts_add_up_to_the_splits(run_dir: Path, report: Path, data) -> None:
    run = reports.load_run(run_dir, evaluate=False)
    table = reports.class_table(run, [run.shortlist[0]])
    for task in TASKS:
        rows = table[table["task"] == task]
        assert rows["class"].tolist() == list(range(10))
        assert rows["count"].sum() == len(data.splits["test"])
        assert rows["train_count"].tolist() == torch.bincount(data.splits["train"].targets[task], minlength=10).tolist()


def test_alphas_are_read_from_the_cross_stitch_checkpoint(run_dir: Path) -> None:
    results = pd.read_parquet(run_dir / "results.parquet")
    row = results[(results["family"] == "cross_stitch")].iloc[0]
    alphas = trial_alphas(row)
    assert sorted(alphas) == ["0", "1"]  # a unit after each of the two stages
    assert [a.shape for a in alphas.values()] == [(2, 2, 8), (2, 2, 16)]
    state = mm.load_checkpoint_state(row["checkpoint"])["model"]
    np.testing.assert_array_equal(alphas["1"], state["units.1.alpha"].numpy())
    assert not np.allclose(alphas["0"][0, 0], 0.9)  # trained away from the initialisation


# ---------------------------------------------------------------- the HTML report in a real browser


def _require_chromium() -> None:
    if not chromium.available():
        if os.environ.get("CI"):
            pytest.fail(f"{chromium.CHROMIUM} is missing; .ci/run installs Debian's chromium.")
        pytest.skip(f"{chromium.CHROMIUM} is not installed (apt-get install chromium)")


SECTION_IDS = ["summary", "pick-tree", "leaderboard", "pareto", "split-sweep", "cross-stitch", "progress", "importance", "per-class"]


def test_report_renders_in_chromium_without_errors(report: Path, tmp_path: Path) -> None:
    _require_chromium()
    html = report.read_text()
    assert re.search(r"<(script|link|img)[^>]*\s(src|href)=", html) is None  # all inline: opens offline
    assert html.count("plotly.js v") == 1 and html.count("id='plotlyjs-gz'") == 1  # once, compressed
    assert len(html.encode()) < 2_600_000  # plotly.js alone is 4.8 MB as text, about 2 MB packed
    for key in SECTION_IDS:
        assert f"<section id='{key}'>" in html, key
    assert "only for the" in html and "shortlisted configs" in html
    assert "<section id='affinity'>" not in html  # this run measured no affinity: no section
    assert html.count("<table") == html.count("<div class='table-wrap'><table")  # every table scrolls in its own box
    check = chromium.check_page(report, screenshot=tmp_path / "report.png", script=_LAYOUT)
    assert check.problems == []
    layout = check.script_result
    # a 1400 px window (tests/chromium.py's --window-size) shows the page without scrolling sideways;
    # the leaderboard, wider than that, scrolls inside its container
    assert layout["page"] <= layout["window"] == 1400, layout
    assert layout["leaderboard"] > layout["leaderboard_box"]
    assert layout["empty"] == []  # every section shows a table, a figure or the verdict
    sections = {f["id"].split("-", 1)[1].rsplit("-", 1)[0] for f in check.figures}
    assert sections == {"summary", "pareto", "split-sweep", "cross-stitch", "progress", "importance", "per-class"}
    # the summary's contributions, heatmaps + histograms of the one cross-stitch trial, 2 of progress,
    # parallel coordinates and importances (when the tiny trials' Delta_m differ at all; else the
    # report says why not)
    importances = "same Δm" not in html
    assert len(check.figures) == 9 + importances
    assert all(f["traces"] > 0 for f in check.figures)
    assert (tmp_path / "report.png").stat().st_size > 10_000


_LAYOUT = """
(() => ({
  page: document.documentElement.scrollWidth, window: window.innerWidth,
  leaderboard: document.querySelector('table.leaderboard').scrollWidth,
  leaderboard_box: document.querySelector('table.leaderboard').parentNode.clientWidth,
  empty: Array.from(document.querySelectorAll('section'))
    .filter(s => !s.querySelector('table, .plotly-graph-div, .verdict, svg')).map(s => s.id),
}))()
"""


def test_leaderboard_sorts_in_the_browser_with_baselines_pinned(report: Path) -> None:
    _require_chromium()
    check = chromium.check_page(report, script=_SORT_BY_DELTA)
    assert check.problems == []
    pinned, ranked = check.script_result
    assert pinned == ["single-task", "ensemble"]
    values = [float(v) for v in ranked]
    assert values == sorted(values)  # ascending after one click on the Delta_m header


_SORT_BY_DELTA = """
(() => {
  const table = document.querySelector('table.leaderboard');
  const th = Array.from(table.querySelectorAll('thead th')).find(h => h.textContent.startsWith('Δm (val)'));
  th.click();
  const col = Array.from(th.parentNode.children).indexOf(th);
  return [Array.from(table.tBodies[0].rows).map(r => r.cells[1].textContent),
          Array.from(table.tBodies[1].rows).map(r => r.cells[col].dataset.v).filter(v => v !== undefined)];
})()
"""


def test_report_of_a_running_search_says_it_is_a_snapshot(run_dir: Path) -> None:
    run = reports.load_run(run_dir, evaluate=False)
    index = run.results.index[run.results["phase"] == "search"][0]
    run.results.loc[index, "status"] = "running"
    html = reports.build_report([run], "live", {})
    assert "still running (1 trials not done)" in html


def test_the_report_repeats_the_data_warnings_of_run_json(run_dir: Path, data: mm.MultiTaskData) -> None:
    run = reports.load_run(run_dir, evaluate=False)
    assert run.info["data_warnings"] == data.warnings()
    run.info["data_warnings"] = ["train/kind: 9 of its 10 classes have no labelled train rows (only [3] have); it cannot <learn> the others."]
    html = reports.build_report([run], "warned", {})
    assert ("<div class='data-warnings'><p>Data warnings:</p><ul><li>train/kind: 9 of its 10 classes have no labelled "
            "train rows (only [3] have); it cannot &lt;learn&gt; the others.</li></ul></div>") in html
    run.info["data_warnings"] = []
    assert "data-warnings" not in reports.build_report([run], "clean", {})


def test_compare_two_runs_in_one_report(run_dir: Path, report: Path, tmp_path: Path, capsys) -> None:
    other = tmp_path / "run2"
    shutil.copytree(run_dir, other)
    out = tmp_path / "compare.html"
    assert cli(["report", str(run_dir), str(other), "--out", str(out)]) == 0
    html = out.read_text()
    assert "tiny-report (run) vs tiny-report (run2)" in html
    assert html.count("<h3>tiny-report (run)") >= 4 and html.count("<h3>tiny-report (run2)") >= 4
    if chromium.available():
        assert chromium.check_page(out).problems == []
    assert cli(["report", str(run_dir), str(other)]) == 2
    assert "needs an output file" in capsys.readouterr().err


# ---------------------------------------------------------------- select


def test_select_applies_every_constraint(run_dir: Path, report: Path) -> None:
    run = reports.load_run(run_dir, evaluate=False)
    results = run.results
    done = results[(results["phase"] == "search") & (results["status"] == "finished")]
    limit = float(done["params"].median())
    floor = float(done["val/left/accuracy"].min())
    chosen = reports.select(
        run.results, run.tasks, reports.Constraints(max_params=limit, min_metric={"left": floor},
                                                    families=("hard_split",), max_task_drop=None)
    )
    expected = done[(done["params"] <= limit) & (done["val/left/accuracy"] >= floor) & (done["family"] == "hard_split")]
    assert set(chosen["trial_id"]) == set(expected["trial_id"])  # one config per trial here: no repeats
    assert (chosen["seeds"] == 1).all() and chosen["approximate"].all()
    everything = reports.select(run.results, run.tasks, reports.Constraints(max_task_drop=None))
    assert set(everything["trial_id"]) == set(done["trial_id"])
    front = everything[everything["pareto_params"]]
    for _, row in everything.iterrows():  # nothing off the front beats a front member on both counts
        dominated = ((everything["delta_m"] >= row["delta_m"]) & (everything["params"] <= row["params"])
                     & ((everything["delta_m"] > row["delta_m"]) | (everything["params"] < row["params"]))).any()
        assert row["pareto_params"] == (not dominated)
    assert len(front) >= 1


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--min-metric", "middle=0.5"], "min_metric: unknown task(s) ['middle']; the run's tasks are ['left', 'right']"),
        (["--min-metric", "left"], "--min-metric 'left': expected TASK=VALUE"),
        (["--family", "tree"], "family: ['tree'] not in this run"),
    ],
)
def test_select_rejects_bad_constraints_by_name(run_dir: Path, report: Path, argv, message, capsys) -> None:
    assert cli(["select", str(run_dir), *argv]) == 2
    assert message in capsys.readouterr().err


def test_select_json_lists_configs_that_rebuild(run_dir: Path, report: Path, capsys) -> None:
    assert cli(["select", str(run_dir), "--json", "--max-latency-ms", "1e9"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["qualifying"] and set(out["pareto"]) <= {r["trial_id"] for r in out["qualifying"]}
    for record in out["qualifying"]:
        mm.build_model(record["config"])


# ---------------------------------------------------------------- export, load, TorchScript, ONNX


@pytest.fixture(scope="module")
def bundle(run_dir: Path, report: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bundle") / "best"
    assert cli(["export", str(run_dir), "--best", "--out", str(out)]) == 0
    return out


def test_bundle_holds_config_weights_card_and_serving_formats(bundle: Path, run_dir: Path) -> None:
    assert sorted(p.name for p in bundle.iterdir()) == [
        "README.md", "SHA256SUMS", "card.json", "config.json", "model.onnx", "model.pt2", "model.ts", "weights.pt",
        "weights.safetensors",
    ]
    card = mm.load_card(bundle)
    run = reports.load_run(run_dir, evaluate=False)
    results = run.results
    best = results.set_index("trial_id", drop=False).loc[run.pick.chosen["trial_id"]]  # the deploy candidate
    assert card["trial_id"] == best["trial_id"] and card["outputs"] == list(TASKS)
    assert card["files"]["onnx"] == "model.onnx" and card["files"]["torchscript"] == "model.ts"
    assert card["metrics"]["left"]["val"]["model"] == best["val/left/accuracy"]
    assert card["metrics"]["left"]["test"]["model"] == best["test/left/accuracy"]
    assert card["metrics"]["right"]["val"]["ensemble"] == results.set_index("trial_id").loc["ensemble", "val/right/accuracy"]
    assert card["delta_m"]["val"]["vs_single_task"] == pytest.approx(best["delta_m"])
    assert card["cost"]["params"] == best["params"] and card["cost"]["flops"] == best["flops"]
    assert card["provenance"]["export_command"].startswith("mtlsearch export")
    assert "--best" in card["provenance"]["export_command"]
    assert card["data"]["labels"]["test/left"]["rows"] == 128
    assert "vs the ensemble" in (bundle / "README.md").read_text()


def test_the_card_says_what_a_deployer_needs(bundle: Path, run_dir: Path) -> None:
    card = mm.load_card(bundle)
    run = reports.load_run(run_dir, evaluate=False)
    chosen = run.pick.chosen
    assert card["license"] == "CC0-1.0"  # the experiment's licence field
    config = json.loads(chosen["config"])
    assert card["structure"] == {"short": mm.describe_config(config), "words": mm.describe_structure(config)}
    # the pick is one of the three searched points (hard splits at 1, a cross-stitch net): none shares every
    # stage. This run has no default reference (no confirmation phase), so the structure decides.
    assert card["no_search_default"] is False
    from reports._card import is_no_search_default

    row = chosen.copy()
    assert run.stage_names == ["conv1", "conv2"]  # the tiny experiment's small_cnn
    shared = {**config, "family": "hard_split", "split_point": 2, "loss_weights": {"left": 0.5, "right": 0.5}}
    row["config"] = json.dumps(shared)
    assert is_no_search_default(run, row) is True  # both stages shared, equal weights
    row["config"] = json.dumps({**shared, "loss_weights": {"left": 0.3, "right": 0.7}})
    assert is_no_search_default(run, row) is False
    assert card["intended_use"].startswith("Predicts left (classification), right (classification) from 1-channel 36x36")
    heads = [item.split(":")[0] for item in card["limitations"]]
    assert heads == ["Budget", "Data", "Splits", "Noise", "Calibration"]
    assert "3 searched trials" in card["limitations"][0] and "test: left 128, right 128" in card["limitations"][1]
    for task in TASKS:
        assert card["output_semantics"][task] == {
            "kind": "classification",
            "meaning": "(B, 10) logits (unnormalised scores), one per class: softmax over dim 1 gives the class "
                       "probabilities, argmax the class index 0..9.",
        }
    text = (bundle / "README.md").read_text()
    for heading in ("## Intended use", "## Limitations", "## Outputs", "## Metrics", "## Files", "Licence: CC0-1.0."):
        assert heading in text
    assert re.search(r"\| `weights.safetensors` \| safetensors \| [0-9a-f]{64} \|", text)
    assert re.search(r"[+-]\d+\.\d\d % \[[+-]?\d+\.\d\d, [+-]?\d+\.\d\d\]", text)  # Delta_m as everywhere
    assert "e+0" not in text and "e-0" not in text


def test_every_bundle_file_has_its_sha256(bundle: Path, tmp_path: Path) -> None:
    import hashlib

    card = mm.load_card(bundle)
    files = sorted(p.name for p in bundle.iterdir())
    digests = {name: hashlib.sha256((bundle / name).read_bytes()).hexdigest() for name in files}
    # the card lists every file but itself (and SHA256SUMS, written last); SHA256SUMS lists every file but itself
    assert card["sha256"] == {n: d for n, d in digests.items() if n not in ("card.json", "SHA256SUMS", "README.md")}
    sums = dict(reversed(line.split("  ", 1)) for line in (bundle / "SHA256SUMS").read_text().splitlines())
    assert sums == {n: d for n, d in digests.items() if n != "SHA256SUMS"}
    assert mm.verify_bundle(bundle) == []
    copy = tmp_path / "copy"
    shutil.copytree(bundle, copy)
    with open(copy / "weights.safetensors", "r+b") as f:  # one flipped byte
        f.seek(-1, 2)
        last = f.read(1)
        f.seek(-1, 2)
        f.write(bytes([last[0] ^ 1]))
    assert mm.verify_bundle(copy) == ["weights.safetensors"]


def test_safetensors_hold_the_same_weights(bundle: Path) -> None:
    from safetensors.torch import load_file

    pickled = torch.load(bundle / "weights.pt", weights_only=True)
    safe = load_file(str(bundle / "weights.safetensors"))
    assert safe.keys() == pickled.keys()
    for key, tensor in pickled.items():
        assert torch.equal(safe[key], tensor), key


@pytest.mark.parametrize("batch", [1, 5])
def test_the_torch_export_program_matches_pytorch(bundle: Path, batch: int) -> None:
    model = mm.load(bundle)
    program = torch.export.load(str(bundle / "model.pt2")).module()
    x = torch.rand(batch, 1, 36, 36, generator=torch.Generator().manual_seed(10 + batch))
    with torch.no_grad():
        expected = model(x)
        got = program(x)
    names = mm.load_card(bundle)["outputs"]
    assert len(got) == len(names)
    for name, tensor in zip(names, got):
        assert tensor.shape == (batch, 10)
        torch.testing.assert_close(tensor, expected[name], rtol=1e-5, atol=1e-6)


def test_the_per_class_section_shows_the_exported_run(bundle: Path, run_dir: Path) -> None:
    run = reports.load_run(run_dir, evaluate=False)
    exported = mm.load_card(bundle)["trial_id"]
    from reports._sections._per_class import per_class_trial

    assert per_class_trial(run)[0] == exported and "the exported run" in per_class_trial(run)[1]
    html = reports.build_report([run], "t", {})
    section = html[html.index("<section id='per-class'>"):]
    section = section[:section.index("</section>")]
    assert f"Trial <b>{exported}</b> (the exported run" in section
    assert "Spearman &rho; = " in section and ", p = " in section
    assert "as the paper found" not in html and "unlike the paper" not in html


def test_load_rebuilds_the_exported_model(bundle: Path, run_dir: Path, data) -> None:
    model = mm.load(bundle)
    run = reports.load_run(run_dir, evaluate=False)
    best = run.results.set_index("trial_id", drop=False).loc[run.pick.chosen["trial_id"]]
    metrics = mm.evaluate(model, data.splits["val"])
    for task in TASKS:
        assert metrics[task]["accuracy"] == pytest.approx(best[f"val/{task}/accuracy"], abs=1e-12)


@pytest.mark.parametrize("batch", [1, 5])
def test_torchscript_and_onnx_match_pytorch(bundle: Path, batch: int) -> None:
    import onnxruntime

    model = mm.load(bundle)
    x = torch.rand(batch, 1, 36, 36, generator=torch.Generator().manual_seed(batch))
    with torch.no_grad():
        expected = model(x)
    scripted = torch.jit.load(str(bundle / "model.ts"))
    session = onnxruntime.InferenceSession(str(bundle / "model.onnx"), providers=["CPUExecutionProvider"])
    card = mm.load_card(bundle)
    assert [o.name for o in session.get_outputs()] == card["outputs"]
    onnx_outputs = session.run(None, {card["input_name"]: x.numpy()})
    with torch.no_grad():
        ts_outputs = scripted(x)
    for name, ts_out, onnx_out in zip(card["outputs"], ts_outputs, onnx_outputs):
        assert ts_out.shape == onnx_out.shape == (batch, 10)
        torch.testing.assert_close(ts_out, expected[name], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(torch.from_numpy(onnx_out), expected[name], rtol=1e-4, atol=1e-4)


def test_export_of_a_given_trial_and_of_the_ensemble(run_dir: Path, report: Path, tmp_path: Path) -> None:
    out = reports.export_trial(run_dir, tmp_path / "ens", trial_id="ensemble", formats=["torchscript"])
    assert isinstance(mm.load(out), mm.EnsembleModel)
    assert not (out / "model.onnx").exists() and (out / "model.ts").is_file()
    x = torch.rand(3, 1, 36, 36)
    with torch.no_grad():
        expected = mm.load(out)(x)
        got = torch.jit.load(str(out / "model.ts"))(x)
    for name, tensor in zip(mm.load_card(out)["outputs"], got):
        torch.testing.assert_close(tensor, expected[name], rtol=1e-5, atol=1e-5)


def test_export_refuses_unknown_trials_and_formats(run_dir: Path, report: Path, tmp_path: Path, capsys) -> None:
    assert cli(["export", str(run_dir), "--trial", "nope", "--out", str(tmp_path / "x")]) == 2
    assert "No trial 'nope' in this run; known:" in capsys.readouterr().err
    with pytest.raises(ValueError, match=r"Unknown export format\(s\) \['tflite'\]; known: torchscript, onnx"):
        reports.export_trial(run_dir, tmp_path / "y", formats=["tflite"])
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_export_names_its_trial_refuses_to_overwrite_and_warns_on_a_pruned_one(
    run_dir: Path, bundle: Path, tmp_path: Path, capsys
) -> None:
    """``export``'s conventions (tests/test_cli_conventions.py has those that need no run)."""
    chosen = reports.load_run(run_dir, evaluate=False).pick.chosen["trial_id"]
    earlier = tmp_path / "best"
    shutil.copytree(bundle, earlier)
    capsys.readouterr()
    assert cli(["export", str(run_dir), "--best", "--out", str(earlier)]) == 2  # never silently overwritten
    assert "exists and is not empty; give --force" in capsys.readouterr().err
    assert cli(["export", str(run_dir), "--out", str(earlier), "--force", "--json", "--no-format", "onnx"]) == 0
    out = capsys.readouterr()
    listing = json.loads(out.out)  # stdout is the document alone
    assert listing["trial_id"] == chosen == mm.load_card(earlier)["trial_id"]
    assert listing["deploy_candidate"] is True and listing["phase"] == "search" and listing["status"] == "finished"
    assert listing["files"] == sorted(p.name for p in earlier.iterdir()) and "model.onnx" not in listing["files"]
    assert listing["warnings"] == [] and "Warning" not in out.err
    results = pd.read_parquet(run_dir / "results.parquet")
    pruned = results[(results["phase"] == "search") & (results["status"] == "pruned")]
    assert len(pruned) == 1  # the useless learning rate
    row = pruned.iloc[0]
    assert cli(["export", str(run_dir), "--trial", row["trial_id"], "--out", str(tmp_path / "pruned"),
                "--no-format", "onnx", "--no-format", "torchscript"]) == 0
    out = capsys.readouterr()
    assert f"\nExported trial {row['trial_id']} (as asked; search phase, hard_split k=1" in out.out
    assert f"Warning: trial {row['trial_id']} was pruned at epoch {row['epochs_run']} of 3:" in out.err
    assert "Warning" not in out.out  # warnings go to stderr


def test_report_json_gives_the_deploy_pick_and_records_it_on_the_study(run_dir: Path, report: Path, tmp_path: Path, capsys) -> None:
    import optuna

    assert cli(["report", str(run_dir), "--json", "--out", str(tmp_path / "again.html")]) == 0
    out = capsys.readouterr()
    document = json.loads(out.out)
    assert "Building the report" in out.err  # what it does, while it does it (on stderr with --json)
    assert document["report"] == str(tmp_path / "again.html")
    results = pd.read_parquet(run_dir / "results.parquet")
    entry = document["runs"][0]
    assert entry["trials"] == {p: rows["status"].value_counts().to_dict() for p, rows in results.groupby("phase")}
    run = reports.load_run(run_dir, evaluate=False)
    pick = entry["deploy_pick"]
    assert pick["trial_id"] == run.pick.chosen["trial_id"] and pick["config_key"] == run.pick.chosen["config_key"]
    assert pick["phase"] == "search" and pick["source"] == "search" and pick["verdict_split"] == "test"
    assert pick["verdict"] == run.pick.sentences(reports.short_label)
    study = optuna.load_study(study_name="search", storage=f"sqlite:///{run_dir / 'optuna.db'}")
    assert study.user_attrs["deploy_pick"] == pick
    assert pick["study_trials"] == [t.number for t in study.trials if t.user_attrs["config_key"] == pick["config_key"]]
    assert len(pick["study_trials"]) == 1


def test_study_trials_name_their_rows_of_the_results_table(run_dir: Path) -> None:
    import optuna

    study = optuna.load_study(study_name="search", storage=f"sqlite:///{run_dir / 'optuna.db'}")
    assert study.metric_names == ["delta_m"]
    results = pd.read_parquet(run_dir / "results.parquet").set_index("trial_id")
    searched = results[results["phase"] == "search"]
    assert sorted(t.user_attrs["trial_id"] for t in study.trials) == sorted(searched.index)
    for trial in study.trials:
        row = searched.loc[trial.user_attrs["trial_id"]]
        assert trial.user_attrs["phase"] == "search" and trial.user_attrs["config_key"] == row["config_key"]
        weights = [trial.user_attrs[f"loss_weights/{task}"] for task in TASKS]
        # as the table has them (the weights the trial reported, as float32 tensors)
        assert weights == pytest.approx([row[f"loss_weights/{task}"] for task in TASKS], rel=1e-6)
        assert sum(weights) == pytest.approx(1.0, abs=1e-12)


def test_select_json_exits_1_when_nothing_qualifies_as_the_table_does(run_dir: Path, report: Path, capsys) -> None:
    assert cli(["select", str(run_dir), "--max-params", "1"]) == 1
    assert "No config meets these constraints." in capsys.readouterr().out
    assert cli(["select", str(run_dir), "--max-params", "1", "--json"]) == 1
    listing = json.loads(capsys.readouterr().out)
    assert listing["qualifying"] == [] and listing["pareto"] == []


def test_importances_say_so_when_every_trial_has_the_same_delta_m() -> None:
    """fANOVA raises on zero variance (chance-level tiny runs do that): the report notes it instead."""
    import optuna

    from reports._sections._optuna import _importances

    dist = {"family": optuna.distributions.CategoricalDistribution(["hard_split", "cross_stitch"]),
            "lr": optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True)}
    trials = [
        optuna.trial.create_trial(params={"family": f, "lr": lr}, distributions=dist, value=-38.8)
        for f, lr in (("hard_split", 1e-3), ("cross_stitch", 1e-2), ("hard_split", 3e-3))
    ]
    block = _importances(trials, [optuna.study.StudyDirection.MAXIMIZE])
    assert isinstance(block, str) and "all 3 trials at the same Δm" in block
    trials.append(optuna.trial.create_trial(params={"family": "cross_stitch", "lr": 2e-3}, distributions=dist, value=5.0))
    assert not isinstance(_importances(trials, [optuna.study.StudyDirection.MAXIMIZE]), str)

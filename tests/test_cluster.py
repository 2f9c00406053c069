"""A multi-node Ray cluster simulated on this machine: trials on several nodes, and a lost node."""
from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
import yaml
from ray import tune

import mtl_models as mm
import spaces
from search import run_experiment, train_trial

TINY = {
    "name": "cluster",
    "data": {"source": "multimnist", "n_train": 128, "n_val": 64, "n_test": 0},
    "tasks": [
        {"name": "left", "kind": "classification", "classes": 10},
        {"name": "right", "kind": "classification", "classes": 10},
    ],
    "backbone": {"name": "small_cnn", "options": {"widths": [8, 8]}},
    "train": {"epochs": 2, "batch_size": 64, "device": "cpu"},
    "search": {"num_trials": 2, "max_concurrent": 2, "pruner": {"name": "nop"}},
    "baselines": {"ensemble": False},
}


@pytest.fixture(scope="module")
def cluster():
    """A head node without CPUs and two 1-CPU worker nodes, so trials must go to the workers."""
    import ray
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    workers = [c.add_node(num_cpus=1) for _ in range(2)]
    c.wait_for_nodes()
    ray.init(address=c.address)
    yield c, workers
    ray.shutdown()
    c.shutdown()


def test_search_on_an_existing_cluster_places_trials_on_several_nodes(cluster, tmp_path: Path) -> None:
    c, workers = cluster
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump(TINY))
    result = run_experiment(spaces.load_experiment(path), tmp_path / "run", address=c.address)
    rows = result.results
    assert set(rows["status"]) == {"finished"}
    assert rows["node_id"].nunique() == 2
    assert set(rows["node_id"]) <= {w.node_id for w in workers}


def test_trial_on_a_lost_node_finishes_from_its_checkpoint(cluster, tmp_path: Path) -> None:
    c, workers = cluster
    tasks = [mm.TaskSpec("left", "classification", 10), mm.TaskSpec("right", "classification", 10)]
    data = mm.load_data("multimnist", tasks, n_train=512, n_val=64, n_test=0)
    config = {
        "family": "hard_split", "split_point": 1, "tasks": [t.to_dict() for t in tasks],
        "backbone": {"name": "small_cnn", "options": {"widths": [8, 16]}}, "input": data.input_spec(),
        "lr": 0.01, "epochs": 8, "batch_size": 64, "seed": 0, "device": "cpu",
    }
    tuner = tune.Tuner(
        tune.with_resources(tune.with_parameters(train_trial, data=data), {"cpu": 1}),
        param_space=config,
        run_config=tune.RunConfig(
            name="nodeloss", storage_path=str(tmp_path), verbose=0,
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            failure_config=tune.FailureConfig(max_failures=2),
        ),
    )
    outcome: dict = {}
    thread = threading.Thread(target=lambda: outcome.setdefault("grid", tuner.fit()))
    thread.start()
    killed = None
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and killed is None:
        results = list(tmp_path.glob("nodeloss/*/result.json"))
        lines = results[0].read_text().splitlines() if results else []
        if len(lines) >= 2:  # two epochs reported (and checkpointed): kill the node it runs on
            node_id = json.loads(lines[-1])["node_id"]
            killed = next(w for w in workers if w.node_id == node_id)
            c.remove_node(killed, allow_graceful=False)
            c.add_node(num_cpus=1)
        time.sleep(0.1)
    thread.join(timeout=240)
    assert killed is not None, "the trial never reported two epochs"
    grid = outcome["grid"]
    result = grid[0]
    assert result.error is None
    assert result.metrics["epoch"] == 8
    trial = tune.ExperimentAnalysis(str(tmp_path / "nodeloss")).trials[0]
    assert trial.num_failures >= 1  # the node's death failed the trial once ...
    reports = [json.loads(line) for line in (Path(result.path) / "result.json").read_text().splitlines()]
    epochs = [r["epoch"] for r in reports]
    # ... and it went on from its last checkpoint: epoch 1 ran once, every epoch is there
    assert epochs.count(1) == 1 and sorted(set(epochs)) == list(range(1, 9))
    assert reports[-1]["node_id"] != killed.node_id

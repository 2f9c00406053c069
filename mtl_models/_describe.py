"""One short, human-readable line per model config (progress lines, reports, cards), and
the key that says when two configs train the same model."""
from __future__ import annotations

import hashlib
import json
from typing import Any

# Keys that do not change what is trained: the seed (a config is trained with several) and
# bookkeeping (a baseline's member index, a confirmation run's role).
_NOT_THE_MODEL = frozenset({"seed", "ensemble_member", "reference"})


def config_key(config: dict[str, Any]) -> str:
    """A short hash of everything in ``config`` that determines the trained model except the
    seed: two trials with the same key differ only in their seed (the same config, trained
    again), so their results are samples of one config's seed distribution."""
    kept = {k: v for k, v in config.items() if k not in _NOT_THE_MODEL and not k.startswith("_")}
    text = json.dumps(kept, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def describe_config(config: dict[str, Any]) -> str:
    """``hard_split k=2``, ``hard_split per-task left:1 right:3``, ``cross_stitch a=(0.90, 0.10) lr x120``,
    ``mmoe 3 shared experts``, ``ple 2 levels 1 shared + 1 per-task experts`` (``cgc ...`` with one level), ...

    Loss weighting and optimisation are appended when they are not the defaults.
    """
    family = config.get("family")
    if family == "hard_split":
        if config.get("affinity_tree") is not None:
            text = f"hard_split affinity tree {config['affinity_tree']}"
        elif config.get("branches") is not None:
            text = "hard_split explicit tree"
        elif config.get("split_points"):
            text = "hard_split per-task " + " ".join(f"{t}:{k}" for t, k in config["split_points"].items())
        elif config.get("task_groups"):
            groups: dict[str, list[str]] = {}
            for task, group in config["task_groups"].items():
                groups.setdefault(str(group), []).append(task)
            branches = " ".join(
                "{" + ",".join(ts) + "}:" + str(config["group_split_points"][g]) for g, ts in groups.items()
            )
            text = f"hard_split trunk:{config.get('split_point')} {branches}"
        else:
            text = f"hard_split k={config.get('split_point')}"
    elif family == "cross_stitch":
        stages = config.get("cross_stitch_stages")
        where = "" if stages is None else " at " + ",".join(str(s) for s in stages)
        init = " from single-task" if config.get("column_init") == "single_task" else ""
        unit = config.get("cross_stitch_unit") or "channel"
        kind = "cross_stitch" if unit == "channel" else f"cross_stitch[{unit}]"
        text = (
            f"{kind} a=({config.get('alpha_same', 0):.2f}, {config.get('alpha_diff', 0):.2f})"
            f" lr x{config.get('lr_multiplier', 1):.3g}{where}{init}"
        )
    elif family == "mtan":
        stages = config.get("mtan_stages")
        text = "mtan attend " + ("all" if stages is None else ",".join(str(s) for s in stages))
    elif family == "mmoe":
        gate = " pooled gates" if config.get("mmoe_gate") == "pooled" else ""
        text = f"mmoe {config.get('mmoe_experts', 2)} shared experts{gate}"
    elif family == "ple":
        levels = int(config.get("ple_levels", 1))
        kind = "cgc" if levels == 1 else f"ple {levels} levels"
        gate = " pooled gates" if config.get("ple_gate") == "pooled" else ""
        libmtl = ", no shared gate" if levels > 1 and config.get("ple_shared_gate") is False else ""
        text = (f"{kind} {config.get('ple_shared', 1)} shared + {config.get('ple_specific', 1)} per-task experts"
                f"{gate}{libmtl}")
    elif family == "single_task":
        text = f"single_task {config.get('task')} (seed {config.get('seed')})"
    elif family == "ensemble":
        text = f"ensemble of {config.get('ensemble_size')} per task"
    else:  # a plugin's family: its name and parameters
        prefix = f"{family}_"
        params = [f"{k[len(prefix):]}={_short(v)}" for k, v in config.items() if isinstance(family, str) and k.startswith(prefix)]
        text = " ".join([str(family), *params])
    extras = []
    weights = config.get("loss_weights") or {}
    if config.get("optimization") == "alternating":
        extras.append("alternating")
    elif config.get("loss_weighting") not in (None, "static"):
        scope = " last shared stage" if config.get("aggregation_scope") == "last_shared_stage" else ""
        extras.append(str(config["loss_weighting"]) + scope)
    elif weights and max(weights.values()) - min(weights.values()) > 1e-9:
        names = [t["name"] for t in config.get("tasks") or [] if t["name"] in weights] or list(weights)
        extras.append("w " + "/".join(f"{weights[t]:.2f}" for t in names))  # in the tasks' order
    if config.get("class_weighting") == "balanced":
        extras.append("balanced classes")
    return text + (f" [{', '.join(extras)}]" if extras else "")


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)

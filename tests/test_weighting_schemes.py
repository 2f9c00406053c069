"""A loss-weighting scheme is one class: its keyword arguments are its parameters, which the
experiment's space accepts, the sampler samples, the trainer passes and the results table
records, with no other file naming them. Proved with a plugin's scheme."""
from __future__ import annotations

import sys
from pathlib import Path

import optuna
import pytest
import torch
import yaml

import mtl_models as mm
import spaces
from mtl_models.weighting import _base
from reports._results import config_row

from conftest import tiny_experiment

PLUGIN = '''
"""A scheme registered as 'focus': weight ``share`` on one task, the rest shared evenly."""
from __future__ import annotations

from typing import Annotated, Literal, Sequence

import torch
from annotated_types import Gt, Lt

import mtl_models as mm


@mm.register_weighting("focus")
class Focus(mm.LossWeighting):
    def __init__(
        self,
        tasks: Sequence[mm.TaskSpec],
        *,
        share: Annotated[float, Gt(0), Lt(1)] = 0.5,
        on: Literal["first", "last"] = "first",
        rounds: int = 1,
    ) -> None:
        super().__init__(tasks)
        n = len(self.task_names)
        focus = 0 if on == "first" else n - 1
        w = torch.full((n,), (1 - share) / max(n - 1, 1))
        w[focus] = share if n > 1 else 1.0
        self.register_buffer("w", w)
        self.rounds = rounds

    def combine(self, losses, model):
        return (self.w * mm.weighting.stack_losses(losses, self.task_names)).sum()

    def weights(self):
        return dict(zip(self.task_names, self.w.tolist()))
'''

INPUT = {"channels": 1, "height": 36, "width": 36}


@pytest.fixture(autouse=True)
def _forget_the_plugin():
    path = list(sys.path)
    yield
    _base._SCHEMES.pop("focus")
    sys.modules.pop("my_weighting", None)
    sys.path[:] = path


def load(folder: Path, space: dict, search: dict | None = None) -> spaces.Experiment:
    (folder / "my_weighting.py").write_text(PLUGIN)
    content = tiny_experiment(plugins=["my_weighting.py"], space={"families": ["hard_split"], **space}, search=search or {})
    path = folder / "exp.yaml"
    path.write_text(yaml.safe_dump(content, sort_keys=False))
    return spaces.load_experiment(path)


def test_the_scheme_s_signature_is_its_schema(tmp_path: Path) -> None:
    load(tmp_path, {})  # imports the plugin
    params = mm.weighting_parameters("focus")
    assert list(params) == ["focus_share", "focus_on", "focus_rounds"]
    assert [(p.name, p.base, p.default) for p in params.values()] == [
        ("share", float, 0.5), ("on", ("first", "last"), "first"), ("rounds", int, 1)
    ]
    # the built-in schemes' keys are the ones experiment files and results tables already use
    assert {k: p.default for k, p in mm.searchable_weighting_parameters().items() if p.scheme != "focus"} == {
        "dwa_temperature": 2.0, "gradnorm_alpha": 1.5, "cagrad_c": 0.5, "nash_mtl_update_every": 1,
        "famo_w_lr": 0.025, "famo_gamma": 1e-3, "db_mtl_beta": 0.9, "db_mtl_beta_sigma": 0.0,
        "aggregation_scope": "shared",  # every aggregator's, one key (config_keys)
    }


def test_a_plugin_scheme_s_parameters_are_searched_and_reach_the_scheme(tmp_path: Path) -> None:
    exp = load(tmp_path, {
        "loss_weighting": ["static", "focus"],
        "focus_share": {"low": 0.6, "high": 0.9},
        "focus_on": ["first", "last"],
        "focus_rounds": {"low": 1, "high": 3},
    })
    sample = spaces.define_space(exp, spaces.fixed_config(exp, INPUT))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(30):
        trial = study.ask()
        config = sample(trial)
        focus = config["loss_weighting"] == "focus"
        assert ({"focus_share", "focus_on", "focus_rounds"} <= set(trial.params)) == focus  # only with its scheme
        if focus:
            seen.add(config["focus_on"])
            assert 0.6 <= config["focus_share"] <= 0.9 and config["focus_rounds"] in (1, 2, 3)
            weighting = mm.build_weighting(mm.build_model(config).tasks, config)
            first, last = config["focus_share"], 1 - config["focus_share"]
            expected = (first, last) if config["focus_on"] == "first" else (last, first)
            assert weighting.weights() == pytest.approx(dict(zip(("left", "right"), expected)), rel=1e-6)
            assert weighting.rounds == config["focus_rounds"]
            row = config_row(config)  # a column each in the results table
            assert {k: row[k] for k in ("focus_share", "focus_on", "focus_rounds")} == {
                k: config[k] for k in ("focus_share", "focus_on", "focus_rounds")
            }
        study.tell(trial, 0.0)
    assert seen == {"first", "last"}


def test_defaults_come_from_the_constructor_and_points_may_name_the_parameters(tmp_path: Path) -> None:
    exp = load(
        tmp_path,
        {"loss_weighting": "focus", "focus_share": {"low": 0.2, "high": 0.8}},
        {"points_to_evaluate": [{"family": "hard_split", "split_point": 1, "focus_share": 0.25}]},
    )
    study = optuna.create_study()
    study.enqueue_trial(spaces.optuna_point(exp.search.points_to_evaluate[0], exp))
    config = spaces.define_space(exp, spaces.fixed_config(exp, INPUT))(study.ask())
    assert (config["focus_share"], config["focus_on"], config["focus_rounds"]) == (0.25, "first", 1)
    weighting = mm.build_weighting(["left", "right"], config)
    assert torch.allclose(weighting.w, torch.tensor([0.25, 0.75]))


@pytest.mark.parametrize(
    "space,message",
    [
        ({"focus_share": 1.5}, "space.focus_share: must be < 1, got 1.5"),
        ({"focus_share": {"low": 0.0, "high": 0.5}}, "space.focus_share: must be > 0, got {'low': 0.0, 'high': 0.5, 'log': False}"),
        ({"focus_on": "middle"}, "space.focus_on: Input should be 'first' or 'last'"),
        ({"focus_rounds": 1.5}, "space.focus_rounds: Input should be a valid integer"),
        ({"focus_shares": 0.5}, "space.focus_shares: unknown field 'focus_shares'; allowed: "),
    ],
)
def test_a_plugin_scheme_s_parameters_are_validated_with_the_line(tmp_path: Path, space: dict, message: str) -> None:
    with pytest.raises(spaces.ExperimentError) as info:
        load(tmp_path, space)
    (problem,) = info.value.problems
    key = message.split(":")[0].removeprefix("space.")
    line = next(i for i, text in enumerate((tmp_path / "exp.yaml").read_text().splitlines(), 1) if text.strip().startswith(f"{key}:"))
    line += isinstance(space[key], dict)  # a range: the line its mapping starts on
    assert problem.startswith(f"{tmp_path / 'exp.yaml'}:{line}: {message}")
    if "unknown field" in message:
        assert problem.endswith("cagrad_c, db_mtl_beta, db_mtl_beta_sigma, dwa_temperature, famo_w_lr, famo_gamma, focus_share, focus_on, focus_rounds, gradnorm_alpha, nash_mtl_update_every, "
                                "alpha_same, alpha_diff, lr_multiplier, cross_stitch_stages, cross_stitch_unit, column_init, mmoe_experts, mmoe_gate, "
                                "mtan_stages, ple_shared, ple_specific, ple_levels, ple_gate, ple_shared_gate")


def test_a_bound_reads_the_same_whichever_number_type_the_hint_holds() -> None:
    """typing caches ``Annotated`` by equal metadata, and ``Lt(1) == Lt(1.0)``: once a module made
    ``Annotated[float, Gt(0.0), Lt(1.0)]`` (mtl_models' file source does), a plugin's
    ``Annotated[float, Gt(0), Lt(1)]`` is that object, so the message must not depend on which
    (the CI failure: "must be < 1.0"). The hint here carries a marker of its own, so it is
    made here, with float bounds, whatever else the process made before."""
    from typing import Annotated

    from annotated_types import Gt, Lt
    from spaces._parts import _check_bounds

    hint = Annotated[float, Gt(0.0), Lt(1.0), "made here"]
    share = mm.SchemeParameter(scheme="focus", name="share", key="focus_share", annotation=hint, default=0.5)
    assert [type(b.lt if isinstance(b, Lt) else b.gt) for b in share.bounds[:2]] == [float, float]
    with pytest.raises(ValueError, match=r"^must be < 1, got 1.5$"):
        _check_bounds(share, 1.5)
    with pytest.raises(ValueError, match=r"^must be > 0, got 0.0$"):
        _check_bounds(share, 0.0)
    assert _check_bounds(share, 0.25) == 0.25

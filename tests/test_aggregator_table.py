"""The torchjd aggregators as data (``METHODS``): each registered name builds its torchjd class
with the parameters its entry declares, and its schema is read from the generated signature
like every other scheme's."""
from __future__ import annotations

import pytest
from annotated_types import Ge, Gt

import mtl_models as mm
from mtl_models.weighting._aggregators import METHODS, WRAPPERS, TorchJDAggregation


@pytest.mark.parametrize("name, config, expected", [
    ("upgrad", {}, "UPGrad(pref_vector=None, projector=QuadprogProjector(norm_eps=0.0001, reg_eps=0.0001))"),
    ("pcgrad", {}, "PCGrad()"),
    ("cagrad", {"cagrad_c": 0.25}, "CAGrad(c=0.25, norm_eps=0.0001)"),
    ("mgda", {}, "MGDA(epsilon=0.001, max_iters=100)"),
    ("imtlg", {}, "IMTLG()"),
    ("aligned_mtl", {}, "AlignedMTL(pref_vector=None, scale_mode='min')"),
    ("nash_mtl", {"nash_mtl_update_every": 3}, "NashMTL(n_tasks=3, max_norm=1.0, update_weights_every=3, optim_niter=20)"),
])
def test_each_name_builds_its_torchjd_aggregator_with_its_parameters(name: str, config: dict, expected: str) -> None:
    scheme = mm.weighting.build_weighting(["a", "b", "c"], {"loss_weighting": name, **config})
    assert isinstance(scheme, TorchJDAggregation) and type(scheme).__name__ == METHODS[name].torchjd
    assert repr(scheme.aggregator) == expected
    # only Nash-MTL keeps state outside tensors, so only its state_dict has an extra entry (old checkpoints load)
    assert sorted(scheme.state_dict()) == (["_extra_state", "last"] if name == "nash_mtl" else ["last"])


def test_the_schema_is_the_generated_signature() -> None:
    params = {name: mm.weighting.weighting_parameters(name) for name in METHODS}
    assert {name: list(p) for name, p in params.items()} == {
        "upgrad": ["aggregation_scope"], "pcgrad": ["aggregation_scope"], "cagrad": ["cagrad_c", "aggregation_scope"],
        "mgda": ["aggregation_scope"], "imtlg": ["aggregation_scope"], "aligned_mtl": ["aggregation_scope"],
        "nash_mtl": ["nash_mtl_update_every", "aggregation_scope"],
    }
    c, every = params["cagrad"]["cagrad_c"], params["nash_mtl"]["nash_mtl_update_every"]
    assert (c.base, c.default, c.bounds) == (float, 0.5, [Ge(0)])
    assert (every.base, every.default, every.bounds) == (int, 1, [Gt(0)])
    assert params["upgrad"]["aggregation_scope"].base == ("shared", "last_shared_stage")


def test_an_unknown_parameter_is_refused_with_the_allowed_ones() -> None:
    with pytest.raises(TypeError, match=r"CAGrad got unexpected keyword arguments \['radius'\]; allowed: \['c', 'scope'\]"):
        WRAPPERS["cagrad"]([], radius=0.3)

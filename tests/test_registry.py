"""The one registry type: names, unknown-name errors, the duplicate policy, and that every
registry of the project follows it."""
from __future__ import annotations

import types

import pytest
from torch import nn

import mtl_models as mm
import reports
from mtl_models import Registry, UnknownNameError


def _module(name: str, source: str) -> types.ModuleType:
    """Execute ``source`` as a fresh module ``name``: what a second import of a plugin does."""
    module = types.ModuleType(name)
    exec(compile(source, f"{name}.py", "exec"), module.__dict__)
    return module


def test_register_get_names_and_mapping_reads() -> None:
    registry: Registry[int] = Registry("widget")
    registry.register("b", 2)

    @registry.register("a")
    def a() -> int:
        return 1

    assert registry.get("a") is a and registry["b"] == 2
    assert registry.names() == ["a", "b"]  # sorted
    assert list(registry) == ["b", "a"]  # registration order
    assert "a" in registry and "c" not in registry and len(registry) == 2
    assert registry.pop("a") is a and registry.pop("a") is None and registry.names() == ["b"]


def test_unknown_name_names_the_kind_the_name_and_the_known_names() -> None:
    registry = Registry("data source")
    registry.register("files", object())
    registry.register("celeba", object())
    with pytest.raises(UnknownNameError) as caught:
        registry.get("imagenet")
    assert str(caught.value) == "Unknown data source 'imagenet'; known data sources: celeba, files."
    assert isinstance(caught.value, KeyError) and isinstance(caught.value, ValueError)
    with pytest.raises(UnknownNameError, match=r"Unknown data source \['a'\]"):
        registry.get(["a"])  # an unhashable name from a YAML file is still just unknown


def test_a_taken_name_is_refused_unless_replaced() -> None:
    registry = Registry("model family", plural="model families")
    registry.register("tree", lambda config: "first")
    other = lambda config: "second"  # noqa: E731  (another line: another definition)
    with pytest.raises(ValueError, match=r"^Model family 'tree' is already registered \(by .*<lambda> line \d+\); choose another name, or pass replace=True"):
        registry.register("tree", other)
    assert registry.get("tree")(None) == "first"
    registry.register("tree", other, replace=True)
    assert registry.get("tree") is other


def test_the_same_definition_registered_again_replaces_silently() -> None:
    """A plugin module imported again (Ray workers, reload, tests) registers new function and
    class objects with the same module and qualified name: not a conflict; the newest wins."""
    registry = Registry("backbone")
    source = "def tiny(in_channels, weights=None):\n    return 'v1'\nclass Kind:\n    pass\n"
    first, second = _module("plugin_x", source), _module("plugin_x", source.replace("v1", "v2"))
    registry.register("tiny", first.tiny)
    registry.register("tiny", first.tiny)  # the identical object
    registry.register("tiny", second.tiny)
    assert registry.get("tiny")(1) == "v2"
    kinds = Registry("task kind", defined_by=type)  # stores instances; the class is the definition
    kinds.register("k", first.Kind())
    kinds.register("k", second.Kind())
    assert isinstance(kinds.get("k"), second.Kind)
    elsewhere = _module("plugin_y", source)  # same function name, another module: a conflict
    with pytest.raises(ValueError, match=r"Backbone 'tiny' is already registered \(by plugin_x\.tiny\)"):
        registry.register("tiny", elsewhere.tiny)


def _backbone(in_channels, weights=None):
    return [mm.Stage("s", nn.Identity(), in_channels)]


class _Kind(mm.get_task_kind("regression").__class__):
    name = "classification"


class _Weighting(mm.LossWeighting):
    pass


class _Augmentation:
    name = "hflip"
    effect = "mirror"


@pytest.mark.parametrize(
    "register,name",
    [
        (lambda: mm.register_backbone("small_cnn")(_backbone), "small_cnn"),
        (lambda: mm.register_family("hard_split")(lambda config: None), "hard_split"),
        (lambda: mm.register_weighting("gradnorm")(_Weighting), "gradnorm"),
        (lambda: mm.register_task_kind(_Kind), "classification"),
        (lambda: mm.register_source("files")(lambda tasks: None), "files"),
        (lambda: mm.data.register_augmentation(_Augmentation), "hflip"),
        (lambda: mm.data.register_label_format("regression")(object), "regression"),
        (lambda: mm.BUNDLE_EXPORTS.register("onnx", ("x.onnx", lambda *a: None)), "onnx"),
        (lambda: reports.register_section("summary", "Mine", 0)(lambda ctx: []), "summary"),
    ],
)
def test_every_registry_refuses_to_overwrite_a_built_in(register, name: str) -> None:
    """Families, weightings and task kinds used to be overwritten silently by a plugin."""
    with pytest.raises(ValueError, match=f"'{name}' is already registered"):
        register()


def test_registry_wrappers_list_and_build_as_before() -> None:
    assert mm.available_families() == ["columns", "cross_stitch", "ensemble", "hard_split", "mmoe", "mtan", "ple", "single_task"]
    assert mm.available_weightings() == [
        "aligned_mtl", "cagrad", "db_mtl", "dwa", "famo", "gradnorm", "imtlg", "mgda", "nash_mtl", "pcgrad", "static", "uncertainty", "upgrad"
    ]
    assert mm.available_sources() == ["celeba", "files", "multimnist", "scenes"]
    assert list(mm.BUNDLE_EXPORTS) == ["torchscript", "onnx", "torch_export"]
    assert reports.available_sections()[0] == "summary"
    with pytest.raises(ValueError, match=r"Unknown task kind 'nope'; known task kinds: binary, classification, "):
        mm.get_task_kind("nope")
    with pytest.raises(ValueError, match=r"Unknown loss weighting 'nope'; known loss weightings: aligned_mtl, cagrad, db_mtl, dwa, famo, gradnorm, imtlg, mgda, nash_mtl, pcgrad, static, uncertainty, upgrad\."):
        mm.build_weighting(["a", "b"], {"loss_weighting": "nope"})

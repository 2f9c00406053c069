"""TorchScript, ONNX and ``torch.export`` exports of a multi-task model, for serving without this package.

The models return ``{task: output}``; serving runtimes want a fixed list of outputs,
so every export wraps the model in :class:`TaskOutputs`, which returns a tuple in the
order of ``model.task_names``. That order is recorded in the bundle (``card.json``
``outputs``) and, for ONNX, as the graph's output names.
"""
from __future__ import annotations

import io
import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from ._io import atomic_path
from .families import MultiTaskModel

INPUT_NAME = "images"


class TaskOutputs(nn.Module):
    """``(B, C, H, W)`` floats in [0, 1] -> a tuple of each task's ``(B, output_dim)``, in ``task_names`` order."""

    def __init__(self, model: MultiTaskModel) -> None:
        super().__init__()
        self.model = model
        self.task_names = list(model.task_names)

    def forward(self, images: Tensor) -> tuple[Tensor, ...]:
        outputs = self.model(images)
        return tuple(outputs[name] for name in self.task_names)


def example_input(input_spec: dict[str, int], batch_size: int = 2) -> Tensor:
    """A random batch shaped like the config's ``input`` (``channels``, ``height``, ``width``)."""
    return torch.rand(batch_size, int(input_spec["channels"]), int(input_spec["height"]), int(input_spec["width"]))


def export_torchscript(model: MultiTaskModel, path: str | Path, example: Tensor) -> Path:
    """Trace ``TaskOutputs(model)`` on CPU in eval mode and save it (``torch.jit.load`` reads it back).

    Tracing records the operations run on ``example``; the model families have no
    data-dependent control flow, so the trace holds for any batch size.
    """
    wrapper = TaskOutputs(model).cpu().eval()
    with warnings.catch_warnings():
        # torch 2.14 marks torch.jit deprecated; TorchScript is still what C++/mobile runtimes load.
        warnings.simplefilter("ignore", FutureWarning)
        traced = torch.jit.trace(wrapper, (example.cpu(),), check_trace=False)
        with atomic_path(path) as tmp:
            torch.jit.save(traced, str(tmp))
    return Path(path)


def export_onnx(model: MultiTaskModel, path: str | Path, example: Tensor, opset: int | None = None) -> Path:
    """Export ``TaskOutputs(model)`` to ONNX with a dynamic batch axis.

    Input ``images`` ``(batch, C, H, W)``; outputs named after the tasks, in
    ``model.task_names`` order. Uses torch's ``torch.export``-based exporter (needs
    the ``onnx`` and ``onnxscript`` packages: ``pip install 'mtlsearch[deploy]'``);
    it runs offline.
    """
    wrapper = TaskOutputs(model).cpu().eval()
    batch = torch.export.Dim("batch", min=1)
    with atomic_path(path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        program = torch.onnx.export(
            wrapper,
            (example.cpu(),),
            input_names=[INPUT_NAME],
            output_names=wrapper.task_names,
            dynamic_shapes=({0: batch},),
            opset_version=opset,
            dynamo=True,
            verbose=False,
        )
        program.save(str(tmp), external_data=False)
    return Path(path)


def export_program(model: MultiTaskModel, path: str | Path, example: Tensor) -> Path:
    """Save ``TaskOutputs(model)`` as a ``torch.export`` program (``.pt2``) with a dynamic batch axis.

    ``torch.export.load(path).module()(images)`` returns the tuple of task outputs in
    ``model.task_names`` order, without this package or the model's Python classes:
    the successor of TorchScript for Python-free serving (AOTInductor, ExecuTorch).
    """
    wrapper = TaskOutputs(model).cpu().eval()
    batch = torch.export.Dim("batch", min=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        program = torch.export.export(wrapper, (example.cpu(),), dynamic_shapes=({0: batch},), strict=False)
    buffer = io.BytesIO()  # the archive checks its file name ends in .pt2; the temporary file's does not
    torch.export.save(program, buffer)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getvalue())
    return Path(path)

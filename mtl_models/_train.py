"""The one train/evaluate routine every trial and baseline uses, on CPU or CUDA."""
from __future__ import annotations

import math
import random
from typing import Any

import numpy as np
import torch
from torch import Tensor


from . import results_table as rt
from ._schedule import make_scheduler, schedule_from_config, steps_per_epoch
from .data import DataFeed, MultiTaskData, Split, iterate_batches, make_feeds
from .families import MultiTaskModel
from .tasks import TargetScale
from .weighting import build_weighting


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN or infinite loss; the trial must not report a score."""


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(name: str | None = "auto") -> torch.device:
    """``auto`` picks CUDA when this process sees a GPU (Ray hides GPUs a trial did not ask for)."""
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def autocast_dtype(config: dict[str, Any], device: torch.device) -> torch.dtype | None:
    """The autocast dtype ``config['precision']`` asks for on ``device`` (None: fp32).

    ``auto``: bf16 on a CUDA GPU that supports it, fp32 elsewhere (CPU autocast is
    slower than fp32 on most CPUs); ``bf16``: bf16 on any device; ``fp32``: none.
    """
    precision = config.get("precision", "auto")
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if precision != "auto":
        raise ValueError(f"precision must be 'auto', 'fp32' or 'bf16', got {precision!r}.")
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return None


def uses_channels_last(config: dict[str, Any], device: torch.device) -> bool:
    """``config['channels_last']``: True/False, or ``auto`` (on CUDA only)."""
    value = config.get("channels_last", "auto")
    return device.type == "cuda" if value == "auto" else bool(value)


_OPTIMIZERS = {
    "adam": lambda groups, c: torch.optim.Adam(groups),
    "adamw": lambda groups, c: torch.optim.AdamW(groups),
    "sgd": lambda groups, c: torch.optim.SGD(groups, momentum=float(c.get("momentum", 0.9))),
}


def make_optimizer(groups: list[dict[str, Any]], config: dict[str, Any]) -> torch.optim.Optimizer:
    """Optimiser ``config['optimizer']``; each group's lr is ``config['lr'] * lr_scale``."""
    name = config.get("optimizer", "adam")
    if name not in _OPTIMIZERS:
        raise ValueError(f"Unknown optimizer {name!r}; known: {', '.join(_OPTIMIZERS)}.")
    lr = float(config["lr"])
    weight_decay = float(config.get("weight_decay", 0.0))
    torch_groups = [
        {
            "params": g["params"],
            "lr": lr * float(g.get("lr_scale", 1.0)),
            "weight_decay": float(g.get("weight_decay", weight_decay)),
        }
        for g in groups
        if g["params"]
    ]
    return _OPTIMIZERS[name](torch_groups, config)


class Trainer:
    """Trains one multi-task model epoch by epoch and evaluates it.

    Holds the model, optimiser, learning-rate schedule (per step, ``lr_schedule``:
    cosine by default), loss weighting and the shuffling generator, so a trial can
    checkpoint after each epoch (``state_dict``) and resume exactly.
    Batches come from :func:`mtl_models.data.make_feeds` as ``config['loader']``
    says: held on the device (gathered by index, no host synchronisation inside an
    epoch) or streamed by a DataLoader; training batches are augmented there. Losses
    are summed on the device and read once per epoch. On a GPU it trains in bf16
    autocast with channels-last tensors and cuDNN autotuning (``precision``,
    ``channels_last``), optionally through ``torch.compile`` (``compile``).
    """

    def __init__(
        self,
        model: MultiTaskModel,
        data: MultiTaskData,
        config: dict[str, Any],
        device: torch.device | str | None = None,
    ) -> None:
        self.device = torch.device(device) if device is not None else resolve_device(config.get("device"))
        self.config = config
        self.autocast = autocast_dtype(config, self.device)
        self.channels_last = uses_channels_last(config, self.device)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed input sizes: autotune the convolutions once
        self.model = model.to(self.device, memory_format=torch.channels_last if self.channels_last else torch.preserve_format)
        self._forward = torch.compile(model.member_outputs) if config.get("compile") else model.member_outputs
        self.tasks = model.tasks
        self.weighting = build_weighting(model.tasks, config).to(self.device)
        self.optimizer = make_optimizer(model.param_groups() + self.weighting.param_groups(), config)
        self.feeds = make_feeds(data, model.task_names, self.device, config.get("loader"))
        self.batch_size = int(config.get("batch_size", 128))
        self.grad_clip = config.get("grad_clip")
        self.alternating = config.get("optimization", "joint") == "alternating"
        self.loss_weights = self._loss_weights(config.get("class_weighting", "none"))
        self.generator = torch.Generator().manual_seed(int(config.get("seed", 0)))
        self.schedule = schedule_from_config(config, steps_per_epoch(len(self.feeds["train"]), self.batch_size))
        self.scheduler = make_scheduler(self.optimizer, self.schedule)
        self.epoch = 0

    def _loss_weights(self, class_weighting: str | None) -> dict[str, Tensor | None]:
        """Per task, what the kind's loss takes from the train labels: class weights
        (``class_weighting: balanced``), the regression kinds' target scale, or None. Sets
        the regression heads' :class:`~mtl_models.tasks.TargetScale` from the same labels."""
        mode = class_weighting or "none"
        if mode not in ("none", "balanced"):
            raise ValueError(f"class_weighting must be 'none' or 'balanced', got {mode!r}.")
        targets = self.feeds["train"].split.targets
        for module in self.model.modules():  # regression heads: standardised outputs, from these labels
            if isinstance(module, TargetScale):
                module.fit(targets[module.task].to(module.mean.device))
        weights = {spec.name: spec.kind_impl.loss_weight(spec, targets[spec.name], mode) for spec in self.tasks}
        return {name: w.to(self.device) if w is not None else None for name, w in weights.items()}

    def train_epoch(self) -> dict[str, float]:
        """One pass over the train split; returns the mean total and per-task losses."""
        model = self.model
        model.train()
        sums = torch.zeros(len(self.tasks) + 1, device=self.device)
        steps = 0
        batches = self.feeds["train"].batches(self.batch_size, shuffle=True, generator=self.generator, augment=True)
        for x, targets in batches:
            if x.shape[0] < 2:  # batch norm cannot train on a single sample
                continue
            total, losses = self.train_step(x, targets, steps)
            sums += torch.stack([total.detach(), *(losses[s.name].detach() for s in self.tasks)])
            steps += 1
        means = (sums / max(steps, 1)).tolist()
        result = {rt.loss(): means[0], **{rt.loss(s.name): v for s, v in zip(self.tasks, means[1:])}}
        self.epoch += 1
        bad = [k for k, v in result.items() if not math.isfinite(v)]
        if bad:
            raise NonFiniteLossError(f"Non-finite training loss at epoch {self.epoch}: {', '.join(bad)}.")
        self.weighting.end_epoch({s.name: result[rt.loss(s.name)] for s in self.tasks})
        return result

    def train_step(self, x: Tensor, targets: dict[str, Tensor], step: int = 0) -> tuple[Tensor, dict[str, Tensor]]:
        """One optimisation step on a batch (the model in training mode); ``step``: its index in
        the epoch (alternating optimisation picks the task by it). Returns the total loss the
        scheme reports and the per-task losses, both before the step."""
        self.optimizer.zero_grad(set_to_none=True)  # before the loss: GradNorm sets its own grads there
        losses = self.losses(self.forward(x), targets)
        if self.alternating:  # seed 002: one task's loss per step, the tasks taking turns
            total = losses[self.tasks[step % len(self.tasks)].name]
            total.backward()
        else:
            total = self.weighting.backward(losses, self.model)
        if self.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), float(self.grad_clip))
        self.optimizer.step()
        if not self.alternating:
            self.weighting.after_step(lambda: self._losses_after_step(x, targets))
        self.scheduler.step()
        return total, losses

    def _losses_after_step(self, x: Tensor, targets: dict[str, Tensor]) -> dict[str, Tensor]:
        """The batch's per-task losses under the parameters the step just set, without gradient,
        still in training mode; the model's buffers (batch-norm running statistics) are left as
        the step left them, so the extra forward pass changes nothing but what it returns."""
        saved = [(b, b.clone()) for b in self.model.buffers()]
        with torch.no_grad():
            losses = self.losses(self.forward(x), targets)
            for buffer, value in saved:
                buffer.copy_(value)
        return losses

    def forward(self, x: Tensor) -> dict[str, list[Tensor]]:
        """The training forward pass: each task's member outputs, in the training precision."""
        with self._autocast():
            return self._forward(self._input(x))

    def losses(self, outputs: dict[str, list[Tensor]], targets: dict[str, Tensor]) -> dict[str, Tensor]:
        """Each task's loss (summed over members), in fp32 outside autocast."""
        return {
            spec.name: sum(
                spec.kind_impl.loss(spec, out.float(), targets[spec.name], self.loss_weights[spec.name])
                for out in outputs[spec.name]
            )
            for spec in self.tasks
        }

    def _autocast(self) -> torch.autocast:
        return torch.autocast(self.device.type, dtype=self.autocast, enabled=self.autocast is not None)

    def _input(self, x: Tensor) -> Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last and x.dim() == 4 else x

    def evaluate(self, split_name: str = "val") -> dict[str, dict[str, float]]:
        """Each task's metrics on a split: ``{task: {metric: value}}`` (in the training precision)."""
        return evaluate(self.model, self.feeds[split_name], self.batch_size * 2, self.autocast)

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "weighting": self.weighting.state_dict(),
            "generator": self.generator.get_state(),
            "epoch": self.epoch,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.weighting.load_state_dict(state["weighting"])
        self.generator.set_state(state["generator"])
        self.epoch = int(state["epoch"])


@torch.no_grad()
def evaluate(
    model: MultiTaskModel, split: Split | DataFeed, batch_size: int = 256, autocast: torch.dtype | None = None
) -> dict[str, dict[str, float]]:
    """Metrics of ``model`` on ``split`` (a feed, or a split on the model's device or not).

    The forward pass runs in ``autocast`` (None: fp32); outputs are cast to fp32 before
    the metrics, as in training.
    """
    model.eval()
    device = next(model.parameters()).device
    states = {spec.name: spec.kind_impl.metric_state(spec, device) for spec in model.tasks}
    for x, targets in iterate_batches(split, batch_size, device=device):
        with torch.autocast(device.type, dtype=autocast, enabled=autocast is not None):
            outputs = model(x)
        for name, state in states.items():
            state.update(outputs[name].float(), targets[name])
    return {name: state.compute() for name, state in states.items()}


def evaluate_model(
    model: MultiTaskModel, data: MultiTaskData, config: dict[str, Any], split: str = "val"
) -> dict[str, dict[str, float]]:
    """``model``'s metrics on ``data.splits[split]`` exactly as a trial of ``config`` measures
    them: on the device the config resolves to here, through the same data feed, in the
    same precision (``precision``) and batch size. For models composed outside a trial
    (the ensemble), so that every validation number in a table is computed alike."""
    device = resolve_device(config.get("device"))
    model = model.to(device)
    feed = make_feeds(data, model.task_names, device, config.get("loader"))[split]
    return evaluate(model, feed, int(config.get("batch_size", 128)) * 2, autocast_dtype(config, device))


def primary_metrics(model_tasks: list, metrics: dict[str, dict[str, float]]) -> dict[str, float]:
    """Each task's primary metric value from ``evaluate``'s output."""
    return {spec.name: metrics[spec.name][spec.metric_name] for spec in model_tasks}


metric_key = rt.metric  # the name a metric is reported and tabled under: ``<split>/<task>/<metric>``


def flatten_metrics(prefix: str, metrics: dict[str, dict[str, float]]) -> dict[str, float]:
    """``{task: {metric: v}}`` -> ``{'prefix/task/metric': v}`` (the results-table column names)."""
    return {metric_key(prefix, task, name): value for task, d in metrics.items() for name, value in d.items()}



"""The text report ``mtlsearch check-data`` prints: per task and split, labels at a glance."""
from __future__ import annotations

from ._tensors import MultiTaskData

_MAX_CLASSES_SHOWN = 12


def _labels(entry: dict) -> str:
    prefix = "pixels " if entry.get("unit") == "pixels" else ""
    return prefix + _values(entry) if _values(entry) else ""


def _values(entry: dict) -> str:
    if "counts" in entry:
        counts = entry["counts"]
        shown = " ".join(f"{c}:{n}" for c, n in enumerate(counts[:_MAX_CLASSES_SHOWN]))
        more = f" ... ({len(counts)} classes)" if len(counts) > _MAX_CLASSES_SHOWN else ""
        return shown + more
    if "mean" in entry:
        return f"mean {entry['mean']:.4g}, std {entry['std']:.4g}, range [{entry['min']:.4g}, {entry['max']:.4g}]"
    return ""


def _imbalance(entry: dict) -> str:
    if "counts" not in entry:
        return ""
    return "inf" if entry["imbalance"] is None else f"{entry['imbalance']:.2f}"


def format_data_report(data: MultiTaskData) -> str:
    """Rows, labelled rows, missing-label rate, class counts or value range and imbalance
    (largest / smallest class) per task and split, then the dataset's warnings."""
    spec = data.input_spec()
    sizes = ", ".join(f"{name} {len(split)}" for name, split in data.splits.items())
    lines = [
        f"Data: {data.description}",
        f"Images: {sizes}; {spec['channels']}x{spec['height']}x{spec['width']}, "
        f"{data.nbytes / 2**20:.1f} MiB decoded",
    ]
    header = ("task", "kind", "split", "rows", "labelled", "missing", "imbalance", "labels")
    rows = []
    summary = data.label_summary()
    for task in data.tasks:
        for split_name in data.splits:
            entry = summary[f"{split_name}/{task.name}"]
            rows.append(
                (
                    task.name, task.kind, split_name, str(entry["rows"]), str(entry["labelled"]),
                    f"{entry['missing_rate']:.1%}", _imbalance(entry), _labels(entry),
                )
            )
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
    for r in [header, *rows]:
        lines.append("  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1])
    warnings = data.warnings()
    if warnings:
        lines.append(f"Warnings ({len(warnings)}):")
        lines += [f"  - {w}" for w in warnings]
    return "\n".join(lines)

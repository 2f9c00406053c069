"""YAML loading that remembers where each value was written, for errors that name the line."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import yaml


class ExperimentError(ValueError):
    """An experiment file is invalid. ``problems`` holds one line per problem:
    ``file:line: field: message``."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        header = "Invalid experiment" if len(self.problems) == 1 else f"Invalid experiment ({len(self.problems)} problems)"
        super().__init__(header + ":\n  " + "\n  ".join(self.problems))


def load_yaml(path: Path) -> tuple[Any, yaml.Node | None]:
    """The parsed document and its node tree (for line numbers)."""
    if not path.is_file():
        raise ExperimentError([f"{path}: experiment file does not exist."])
    text = decode_text(path, path.read_bytes())
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise ExperimentError([f"{path}{line}: not valid YAML ({getattr(exc, 'problem', exc)})."]) from None
    except RecursionError:  # thousands of nested [ or {: the parser recurses once per level
        raise ExperimentError([f"{path}: not valid YAML (nested too deeply)."]) from None
    except ValueError as exc:  # a scalar Python cannot hold, e.g. an integer of more than 4300 digits
        raise ExperimentError([f"{path}: not valid YAML ({str(exc).splitlines()[0][:200]})."]) from None
    return data, node


_BOMS = ((b"\x00\x00\xfe\xff", "utf-32"), (b"\xff\xfe\x00\x00", "utf-32"), (b"\xef\xbb\xbf", "utf-8-sig"),
         (b"\xfe\xff", "utf-16"), (b"\xff\xfe", "utf-16"))


def decode_text(path: Path, raw: bytes) -> str:
    """The file's text: UTF-8, or UTF-8/16/32 with a byte-order mark (as YAML allows);
    anything else is an :class:`ExperimentError` naming the line of the first bad byte."""
    encoding = next((enc for bom, enc in _BOMS if raw.startswith(bom)), "utf-8")
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n" if encoding.startswith("utf-8") else "\n".encode(encoding)[-2:]) + 1
        raise ExperimentError(
            [f"{path}:{line}: not {encoding.upper().removesuffix('-SIG')} text (byte {raw[exc.start]:#04x}); save the file as UTF-8."]
        ) from None


def line_of(node: yaml.Node | None, loc: Sequence[Any]) -> int | None:
    """1-based line of the deepest node along ``loc`` (keys and list indices)."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next((v for k, v in node.value if getattr(k, "value", None) == str(part)), None)
            if match is None:
                key = next((k for k, _ in node.value if getattr(k, "value", None) == str(part)), None)
                return key.start_mark.line + 1 if key is not None else line
            node = match
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
            node = node.value[part]
        else:
            break
        line = node.start_mark.line + 1
    return line


def format_loc(loc: Sequence[Any]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"

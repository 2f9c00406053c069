"""The README is executable documentation: every command it shows in a fenced block runs here.

The commands are read from README.md itself. ``mtlsearch`` commands run as a new user
types them (the installed console script, in a scratch directory), against a
quickstart shrunk to seconds (``examples/quickstart.yaml`` there is the real one with
less data, fewer epochs and trials). The Python blocks run too. A command that cannot
run here (it needs a cluster, a cloud account or a dashboard server; it installs the
package, which ``.ci/run`` does in a fresh virtual environment; it is a benchmark) is
skipped for a stated reason; an ``mtlsearch`` command inside one is still parsed, so a
renamed option fails. A fenced command that is neither run nor skipped fails the suite.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

# Commands no test can run here, by prefix, and why.
SKIPPED = {
    "pip install -e": ".ci/run runs the install commands in a fresh virtual environment (checked below)",
    "python -m pytest": "this suite",
    "pip install -U 'ray[default]": "installs the cluster launcher",
    "ray up": "needs a cloud account or the cluster's hosts",
    "ray exec": "needs a running cluster",
    "ray attach": "needs a running cluster",
    "ray rsync-down": "needs a running cluster",
    "mkdir -p runs": "makes the folder the next command (ray rsync-down, a running cluster) fills",
    "optuna-dashboard": "starts a web server (pip install optuna-dashboard)",
    "python -m bench.": "a benchmark (minutes; results in bench/results)",
    "python bench/": "a benchmark (minutes; results in bench/results)",
}


@dataclass(frozen=True)
class Block:
    lang: str
    text: str
    line: int  # of the opening fence


def fenced_blocks(text: str) -> list[Block]:
    blocks, lines = [], text.splitlines()
    i = 0
    while i < len(lines):
        match = re.match(r"^```(\w*)\s*$", lines[i])
        if match:
            end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
            blocks.append(Block(match.group(1), "\n".join(lines[i + 1 : end]), i + 1))
            i = end
        i += 1
    return blocks


def shell_commands(block: Block) -> list[str]:
    """The commands of a bash block: continuation lines joined, comments dropped, each
    as its tokens re-joined (``shlex``), so ``&&`` stays a token of its own."""
    joined = re.sub(r"\\\n\s*", " ", block.text)
    out = []
    for line in joined.splitlines():
        tokens = shlex.split(line, comments=True)
        if tokens:
            out.append(" ".join(t if t == "&&" else shlex.quote(t) for t in tokens))
    return out


def readme_commands() -> list[str]:
    return [c for b in fenced_blocks(README.read_text()) if b.lang == "bash" for c in shell_commands(b)]


def segments(command: str) -> list[str]:
    return [s.strip() for s in command.split(" && ")]


def skip_reason(segment: str) -> str | None:
    return next((why for prefix, why in SKIPPED.items() if segment.startswith(prefix)), None)


def runnable(command: str) -> list[str]:
    """The ``mtlsearch`` segments of a command that this module runs."""
    return [s for s in segments(command) if s.startswith("mtlsearch ")]


def test_every_fenced_command_is_run_or_skipped_for_a_stated_reason() -> None:
    commands = readme_commands()
    assert len(commands) >= 10
    unknown = [s for c in commands for s in segments(c) if not s.startswith("mtlsearch ") and skip_reason(s) is None]
    assert not unknown, f"README commands that no test runs (run them in tests/test_readme.py or skip them with a reason): {unknown}"


def test_mtlsearch_commands_inside_cluster_commands_parse() -> None:
    from search.cli import build_parser

    inner = []
    for command in readme_commands():
        for segment in segments(command):
            if segment.startswith("ray exec"):
                inner += [arg for arg in shlex.split(segment) if arg.startswith("mtlsearch ")]
    assert inner, "the cluster section shows mtlsearch run/resume through ray exec"
    for text in inner:
        build_parser().parse_args(shlex.split(text)[1:])  # SystemExit(2) on an unknown option


def test_inline_mtlsearch_commands_are_ones_the_fenced_blocks_show() -> None:
    """Prose may mention a command (`mtlsearch report RUN`); its subcommand and options must be
    among those of the fenced, tested commands."""
    shown = {(_subcommand(a), tuple(sorted(o for o in a if o.startswith("--")))) for a in map(shlex.split, _all_runnable())}
    text = README.read_text()
    for span in re.findall(r"`(mtlsearch [^`]+)`", text):
        args = shlex.split(span)
        if len(args) < 2 or args[1].startswith("-"):
            continue
        options = {o for o in args if o.startswith("--")}
        assert any(sub == args[1] and options <= set(opts) for sub, opts in shown), f"`{span}` is not shown in a fenced block"


def _all_runnable() -> list[str]:
    return [s for c in readme_commands() for s in runnable(c)]


def test_ci_runs_the_readme_install_and_test_commands() -> None:
    """``.ci/run`` runs the quickstart and test commands exactly as the README shows them."""
    ci = (ROOT / ".ci" / "run").read_text()
    blocks = [b for b in fenced_blocks(README.read_text()) if b.lang == "bash"]
    first = [line.strip() for b in blocks for line in b.text.splitlines() if line.startswith("pip install -e")]
    assert len(first) == 2, first  # the quickstart line and the test line, as typed
    for command in first:
        assert command in ci, f".ci/run does not run the README's `{command}`"
    assert "-m venv" in ci


# --- running them --------------------------------------------------------------------------


def _mtlsearch() -> str:
    local = Path(sys.executable).parent / "mtlsearch"
    found = str(local) if local.exists() else shutil.which("mtlsearch")
    assert found, "the mtlsearch console script is not installed (pip install -e .)"
    return found


def shrunken_quickstart() -> dict:
    """The real quickstart with seconds of work: less data, fewer epochs, trials and seeds."""
    exp = yaml.safe_load((ROOT / "examples" / "quickstart.yaml").read_text())
    exp["data"].update(n_train=256, n_val=128, n_test=64)
    exp["backbone"]["options"] = {"widths": [8, 8, 16, 16]}
    exp["train"].update(epochs=2, batch_size=64, device="cpu")
    exp["search"].update(num_trials=3, max_concurrent=2)
    exp["search"]["sampler"]["n_startup_trials"] = 2
    exp["search"]["pruner"].update(n_startup_trials=1)
    exp["baselines"] = {**exp.get("baselines", {}), "seeds": 2}
    exp["confirm"] = {"top_k": 1, "seeds": 2}  # the phase runs, with the fewest trials that still give a spread
    return exp


@dataclass
class Outcome:
    command: str
    returncode: int
    stdout: str
    stderr: str
    seconds: float = 0.0


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("readme")
    (work / "examples").mkdir()
    text = yaml.safe_dump(shrunken_quickstart(), sort_keys=False)
    (work / "examples" / "quickstart.yaml").write_text(text)
    (work / "experiment.yaml").write_text(text)  # `mtlsearch check-data experiment.yaml`
    return work


@pytest.fixture(scope="module")
def outcomes(workdir: Path) -> dict[str, Outcome]:
    """Every runnable README command, run in README order in ``workdir``."""
    done: dict[str, Outcome] = {}
    for text in _all_runnable():
        args = shlex.split(text)
        if "runs/other" in args and not (workdir / "runs" / "other").exists():
            shutil.copytree(workdir / "runs" / "quick", workdir / "runs" / "other")
        if "TRIAL_ID" in args:
            trial = _first_trial(done)
            if trial is None:
                done[text] = Outcome(text, -1, "", "no trial id: `mtlsearch select runs/quick --json` listed none")
                continue
            args[args.index("TRIAL_ID")] = trial
        started = time.monotonic()
        proc = subprocess.run([_mtlsearch(), *args[1:]], cwd=workdir, capture_output=True, text=True, timeout=600)
        done[text] = Outcome(text, proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started)
    return done


def _first_trial(done: dict[str, Outcome]) -> str | None:
    """The first trial the README's ``select --json`` listed (the README's TRIAL_ID)."""
    listing = next((o for c, o in done.items() if "select" in c and "--json" in c), None)
    try:
        return json.loads(listing.stdout)["qualifying"][0]["trial_id"]
    except (AttributeError, ValueError, LookupError):
        return None


@pytest.mark.parametrize("command", _all_runnable())
def test_readme_command(command: str, outcomes: dict[str, Outcome], workdir: Path) -> None:
    out = outcomes[command]
    print(f"{out.seconds:.1f}s: {command}")
    args = shlex.split(command)
    sub = _subcommand(args)
    if sub == "select" and "--json" not in args and out.returncode == 1:
        assert "No config meets these constraints." in out.stdout  # documented: exit 1 when nothing qualifies
        return
    assert out.returncode == 0, f"`{command}` failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    if sub in ("run", "resume"):
        run = workdir / args[args.index("--out") + 1] if sub == "run" else workdir / args[2]
        for name in ("results.parquet", "curves.parquet", "optuna.db", "report.html", "run.json"):
            assert (run / name).is_file(), name
        assert f"Report:  {run.resolve() / 'report.html'}" in out.stdout
        if sub == "run":  # the plan at once, its timing once the baselines are trained: not before the first trial
            text = out.stdout
            assert text.index("Timing: once the baselines") < text.index(" epoch 1/") < text.index("Expected wall time")
            assert re.search(r"Expected wall time after the baselines: ~\S+ (s|min)( to \S+ (s|min))? of training "
                             r"\(search ~\S+ (s|min)", text), text
    elif sub == "report":
        run = args[args.index("report") + 1]
        target = workdir / args[args.index("--out") + 1] if "--out" in args else workdir / run / "report.html"
        assert target.is_file() and "<html" in target.read_text()[:2000].lower()
        if "--json" in args:
            document = json.loads(out.stdout)  # stdout holds the document alone
            assert Path(document["report"]) == Path(run) / "report.html" and document["runs"][0]["deploy_pick"]["verdict"]
    elif sub == "select" and "--json" in args:
        listing = json.loads(out.stdout)
        assert listing["qualifying"] and all("config" in r for r in listing["qualifying"])
    elif sub == "select":
        assert "qualifying config(s)" in out.stdout
    elif sub == "export":
        bundle = workdir / args[args.index("--out") + 1]
        expected = {"config.json", "weights.pt", "model.ts", "card.json", "README.md"}
        if "--no-format" not in args:
            expected.add("model.onnx")
        assert expected <= {p.name for p in bundle.iterdir()}
        assert ("model.onnx" in {p.name for p in bundle.iterdir()}) == ("--no-format" not in args)
        card = json.loads((bundle / "card.json").read_text())
        assert ("retrained" in card) == ("--retrain" in args)
    elif sub == "check-data" and "--json" in args:
        document = json.loads(out.stdout)
        assert document["ok"] is True and document["problems"] == [] and set(document["rows"]) >= {"train", "val"}
    elif sub == "check-data":
        assert "OK:" in out.stdout
    elif sub == "plan" and "--set" in args:  # the settings as changed
        assert "\n  families: [hard_split]\n" in out.stdout and "Budget: 4 trials (--set)" in out.stdout, out.stdout
    elif sub == "plan":  # the resolved space, the phases with their trainings, a timed estimate
        assert "Space (defaults filled in):" in out.stdout and "\n  tree: single  (default)\n" in out.stdout
        assert re.search(r"^  search +3 trainings x 2 epochs", out.stdout, flags=re.M), out.stdout
        assert "Expected wall time: ~" in out.stdout
    elif sub == "--version":
        assert re.fullmatch(r"mtlsearch \S+\n", out.stdout), out.stdout
    elif sub == "--print-completion":
        assert "_shtab_mtlsearch" in out.stdout and "export" in out.stdout
    elif sub == "affinity":
        result = json.loads((workdir / args[args.index("--out") + 1]).read_text())
        assert result["tasks"] == ["left", "right"] and len(result["affinity"]) == 4 and result["trees"]
        assert "Proposed branch trees" in out.stdout
    else:
        pytest.fail(f"no expectation written for `mtlsearch {sub}`; add one here")


def _subcommand(args: list[str]) -> str:
    """``mtlsearch [-v|-q ...] COMMAND ...``'s command, or the top-level option that stands for one
    (``--version``, ``--print-completion``)."""
    if args[1] in ("--version", "--print-completion"):
        return args[1]
    return next(a for a in args[1:] if not a.startswith("-"))


def _python_blocks() -> list[Block]:
    return [b for b in fenced_blocks(README.read_text()) if b.lang == "python"]


def test_every_python_block_is_run() -> None:
    kinds = [("deploy/best" in b.text, "register_backbone" in b.text) for b in _python_blocks()]
    assert all(any(k) for k in kinds), "a README Python block this module does not run"


@pytest.mark.parametrize("block", [b for b in _python_blocks() if "deploy/best" in b.text], ids=lambda b: f"line{b.line}")
def test_readme_inference_snippet(block: Block, outcomes: dict[str, Outcome], workdir: Path) -> None:
    """The load and serving snippets, on the bundle the README's export command wrote."""
    program = (
        "import torch\nimages = torch.rand(3, 1, 36, 36)\n"
        + block.text
        + "\nassert set(outputs) == {'left', 'right'}, outputs.keys()"
        + "\nassert all(tuple(v.shape) == (3, 10) for v in outputs.values())\n"
    )
    proc = subprocess.run([sys.executable, "-c", program], cwd=workdir, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_readme_plugin_example_registers_its_backbone(tmp_path: Path) -> None:
    block = next(b for b in _python_blocks() if "register_backbone" in b.text)
    (tmp_path / "my_backbones.py").write_text(block.text)
    program = (
        "import torch, my_backbones, mtl_models as mm\n"
        "stages = mm.build_backbone('tiny', 1)\n"
        "x = torch.zeros(2, 1, 16, 16)\n"
        "for s in stages: x = s.module(x)\n"
        "assert x.shape[1] == stages[-1].out_channels\n"
    )
    proc = subprocess.run([sys.executable, "-c", program], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_ci_removes_the_environment_it_created(tmp_path: Path) -> None:
    """A fresh environment is ~7 GB; ``.ci/run`` removes it however it ends (here: the
    interpreter fails at once), so repeated runs do not fill the disk."""
    if not os.access("/usr/bin/chromium", os.X_OK):
        pytest.skip(".ci/run would install chromium first")
    failing = tmp_path / "python"
    failing.write_text("#!/bin/sh\nexit 3\n")
    failing.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != "CI_VENV"}
    done = subprocess.run(["bash", str(ROOT / ".ci" / "run")], env={**env, "PYTHON": str(failing)},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 3, done.stdout + done.stderr
    created = re.search(r"virtual environment in (\S+)", done.stdout)
    assert created, done.stdout
    assert not Path(created.group(1)).exists()

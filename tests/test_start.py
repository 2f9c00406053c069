"""The start of ``mtlsearch run`` (search.run._start): the data loads in a thread while Ray starts,
and the phases' libraries are imported once Ray is up, while the load is still running."""
from __future__ import annotations

import subprocess
import sys
import threading

import pytest

import search.run._start as start


@pytest.fixture
def fake_ray(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """``init_ray`` replaced by one that records its call (no Ray is started)."""
    events: list[str] = []
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(start, "init_ray", lambda address=None, num_cpus=None: events.append(f"ray {num_cpus}"))
    return events


def test_then_runs_once_ray_is_up_while_load_still_runs(fake_ray: list[str]) -> None:
    then_ran = threading.Event()

    def load() -> str:
        # finishes only after `then` ran: with `then` run after the load, this would time out
        assert then_ran.wait(timeout=30), "then() did not run while load() was running"
        fake_ray.append("loaded")
        return "data"

    def then() -> None:
        fake_ray.append("then")
        then_ran.set()

    assert start.load_while_ray_starts(load, None, 3, then=then) == "data"
    assert fake_ray == ["ray 3", "then", "loaded"]


def test_a_load_error_is_raised_before_an_error_of_then(fake_ray: list[str]) -> None:
    def load() -> None:
        raise ValueError("bad experiment file")

    def then() -> None:
        raise ImportError("a missing library")

    with pytest.raises(ValueError, match="bad experiment file"):
        start.load_while_ray_starts(load, None, None, then=then)
    assert fake_ray == ["ray None"]


def test_joining_a_cluster_loads_first_and_starts_no_ray(fake_ray: list[str]) -> None:
    order: list[str] = []
    value = start.load_while_ray_starts(lambda: order.append("load") or 7, "ray://head:10001", None,
                                        then=lambda: order.append("then"))
    assert value == 7 and order == ["load", "then"] and fake_ray == []


def test_the_main_thread_imports_neither_torch_nor_this_project() -> None:
    """What the main thread imports before Ray starts (the CLI, its logging, search.run._start) and
    while the load thread imports torch and the project (the phases' libraries): no torch, so
    Ray starts at once, and no module in common that could make the two threads wait for
    each other's imports."""
    code = ("import sys, search.cli, search.base._log, search.run._start as s; s.import_phase_libraries(); "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'mtl_models', 'spaces', 'reports'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_a_local_ray_starts_no_idle_workers_that_trials_could_not_use() -> None:
    """Ray starts idle workers for a new driver, but gives them only to tasks and actors without a
    runtime env, and every Tune trial has one: a local Ray of mtlsearch starts none, leaving the
    CPU to the run's start (bench/time_to_first.py). Counted among the processes under this one
    (other tests' Rays on the machine are not), by the title Ray gives them."""
    code = """
import os, time
from search import init_ray

def idle_workers():
    processes = {}  # pid: (parent, command line), every process read once
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/stat") as f, open(f"/proc/{entry}/cmdline", "rb") as g:
                processes[int(entry)] = (int(f.read().rsplit(")", 1)[1].split()[1]), g.read())
        except (OSError, ValueError, IndexError):
            continue
    ours, grew = {os.getpid()}, True
    while grew:  # the processes under this one
        below = {pid for pid, (parent, _) in processes.items() if parent in ours}
        grew, ours = not below <= ours, ours | below
    # the title Ray gives a worker with no task yet
    return sum(processes[pid][1].startswith(b"ray::IDLE") for pid in ours if pid in processes)

init_ray(num_cpus=2)
time.sleep(3)  # Ray starts its idle workers as the driver registers
print(idle_workers())
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.split()[-1] == "0", out.stdout + out.stderr


def test_reading_an_experiment_costs_no_compiler_stack_and_no_random_state() -> None:
    """A small backbone is dry-run on the CPU: reading the quickstart imports neither
    torch._dynamo nor sympy (~1.4 s of a CPU the meta device's shape functions cost), and
    leaves torch's random state as it found it."""
    code = ("import sys, torch, spaces; torch.manual_seed(3); before = torch.random.get_rng_state(); "
            "spaces.load_experiment('examples/quickstart.yaml'); "
            "print(torch.equal(before, torch.random.get_rng_state()), 'torch._dynamo' in sys.modules, 'sympy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["True", "False", "False"]


def test_a_backbone_too_large_for_a_cpu_dry_run_is_checked_on_the_meta_device() -> None:
    from spaces._schema import CPU_DRY_RUN_MAX_PARAMS, backbone_facts

    wide = backbone_facts("small_cnn", 3, '{"widths": [2048, 4096, 4096, 4096]}', (36, 36))
    assert wide.error is None and len(wide.stage_names) == 4  # > CPU_DRY_RUN_MAX_PARAMS, nothing allocated
    tiny = backbone_facts("small_cnn", 3, '{"widths": [8, 8, 8, 8]}', (2, 2))
    assert tiny.error and "fails" in tiny.error  # an input too small for its stages, found on the CPU
    assert CPU_DRY_RUN_MAX_PARAMS < 4096 * 4096 * 9 * 2

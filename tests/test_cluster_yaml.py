"""examples/cluster.yaml (and its on-prem variant in the comments) pass the checks `ray up`
makes before it contacts a cloud: Ray's defaults merged in, then Ray's JSON schema and
its consistency checks. No cluster is started and nothing is contacted."""
from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml

pytest.importorskip("jsonschema")  # Ray's validate_config needs it (installed with ray[default])
from ray.autoscaler._private.util import prepare_config, validate_config  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = ROOT / "examples" / "cluster.yaml"


def _onprem_variant() -> dict:
    """The commented on-prem variant at the end of the file, uncommented."""
    text = CLUSTER.read_text()
    block = re.search(r"^# --- on-prem variant.*?\n(.*?)^# --- end of the on-prem variant", text, re.S | re.M)
    assert block, "the on-prem variant block is missing from examples/cluster.yaml"
    lines = [line[2:] if line.startswith("# ") else line.lstrip("#") for line in block.group(1).splitlines()]
    return yaml.safe_load("\n".join(lines))


def _validate(config: dict) -> dict:
    """What `ray up` does first (commands.create_or_update_cluster -> _bootstrap_config)."""
    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


def test_aws_cluster_config_passes_rays_schema() -> None:
    config = yaml.safe_load(CLUSTER.read_text())
    assert config["provider"]["type"] == "aws"
    prepared = _validate(config)
    types = prepared["available_node_types"]
    head = types[prepared["head_node_type"]]
    workers = {name: t for name, t in types.items() if name != prepared["head_node_type"]}
    assert not head["node_config"]["InstanceType"].startswith(("g", "p"))  # a CPU head
    assert workers and all(t["node_config"]["InstanceType"].startswith(("g", "p")) for t in workers.values())
    assert all(t["max_workers"] >= t["min_workers"] for t in workers.values())
    assert prepared["max_workers"] >= sum(t["max_workers"] for t in workers.values())


@pytest.mark.parametrize("variant", ["aws", "onprem"])
def test_the_nodes_install_this_working_tree(variant: str) -> None:
    config = yaml.safe_load(CLUSTER.read_text()) if variant == "aws" else _onprem_variant()
    prepared = _validate(config)
    # `ray up` runs from the repository root; the tree goes to ~/mtlsearch on every node ...
    mounts = prepared["file_mounts"]
    assert (ROOT / mounts["~/mtlsearch"] / "pyproject.toml").is_file()
    # ... and is pip-installed from there (no git URL, no placeholder)
    commands = " ; ".join(prepared["setup_commands"])
    assert "pip install" in commands and "-e ~/mtlsearch" in commands
    assert "git+" not in commands
    assert not prepared.get("docker")  # docker-free: the commands run on the hosts
    assert "**/.git" in prepared["rsync_exclude"] and ".gitignore" in prepared["rsync_filter"]


def test_onprem_variant_is_a_local_provider_with_the_hosts() -> None:
    config = _onprem_variant()
    assert config["provider"]["type"] == "local"
    assert config["provider"]["head_ip"] and config["provider"]["worker_ips"]
    prepared = _validate(config)
    (node_type,) = prepared["available_node_types"].values()  # Ray's single local node type
    assert node_type["min_workers"] == node_type["max_workers"] == len(config["provider"]["worker_ips"])


def test_a_broken_config_is_refused() -> None:
    """The check has teeth: an unknown top-level field fails Ray's schema."""
    import jsonschema

    config = yaml.safe_load(CLUSTER.read_text())
    config["setup_command"] = ["typo"]
    with pytest.raises(jsonschema.ValidationError):
        _validate(config)

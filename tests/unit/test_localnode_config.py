"""Multi-node layout and config of the local cluster (files only, no processes)."""

from __future__ import annotations

from pathlib import Path

import pytest

from esrag import localnode
from esrag.errors import EsragError
from esrag.settings import load_settings


def _dist(tmp_path: Path) -> Path:
    dist = tmp_path / "dist"
    (dist / "config").mkdir(parents=True)
    (dist / "config" / "jvm.options").write_text("-XX:+UseG1GC\n")
    return dist


def test_layouts_use_consecutive_ports(tmp_path: Path) -> None:
    settings = load_settings(state_dir=tmp_path, es_url="http://127.0.0.1:9250")
    layouts = localnode.node_layouts(settings, 3)
    assert [(n.name, n.http_port, n.transport_port) for n in layouts] == [
        ("node-0", 9250, 9350), ("node-1", 9251, 9351), ("node-2", 9252, 9352),
    ]
    assert [n.root for n in layouts] == [tmp_path / "es" / f"node-{i}" for i in range(3)]


def test_multi_node_config_bootstraps_only_the_first_time(tmp_path: Path) -> None:
    settings = load_settings(state_dir=tmp_path, es_url="http://127.0.0.1:9200", es_heap="384m")
    layouts = localnode.node_layouts(settings, 3)
    dist = _dist(tmp_path)
    localnode.write_node_config(settings, dist, layouts[1], layouts, bootstrap=True)
    yml = (layouts[1].config / "elasticsearch.yml").read_text().splitlines()
    assert 'discovery.seed_hosts: ["127.0.0.1:9300", "127.0.0.1:9301", "127.0.0.1:9302"]' in yml
    assert "cluster.initial_master_nodes: [node-0, node-1, node-2]" in yml
    assert "http.port: 9201" in yml and "transport.port: 9301" in yml
    assert f"path.data: {layouts[1].data}" in yml
    assert not any(line.startswith("discovery.type") for line in yml)
    heap = (layouts[1].config / "jvm.options.d" / "esrag-heap.options").read_text()
    assert heap == "-Xms384m\n-Xmx384m\n"
    localnode.write_node_config(settings, dist, layouts[1], layouts, bootstrap=False)
    yml = (layouts[1].config / "elasticsearch.yml").read_text()
    assert "initial_master_nodes" not in yml and "discovery.seed_hosts" in yml


def test_single_node_config(tmp_path: Path) -> None:
    settings = load_settings(state_dir=tmp_path)
    (node,) = localnode.node_layouts(settings, 1)
    localnode.write_node_config(settings, _dist(tmp_path), node, [node])
    yml = (node.config / "elasticsearch.yml").read_text().splitlines()
    assert "discovery.type: single-node" in yml
    assert not any("seed_hosts" in line or "initial_master" in line for line in yml)


def test_node_count_follows_an_existing_cluster(tmp_path: Path) -> None:
    settings = load_settings(state_dir=tmp_path)
    assert localnode.planned_node_count(settings) == 1
    assert localnode.planned_node_count(settings, 3) == 3
    for node in localnode.node_layouts(settings, 3):
        (node.data / "_state").mkdir(parents=True)
    assert localnode.existing_node_count(settings) == 3
    assert localnode.planned_node_count(settings) == 3
    assert localnode.planned_node_count(settings, 3) == 3
    with pytest.raises(EsragError) as err:
        localnode.planned_node_count(settings, 1)
    assert str(err.value) == (
        f"{tmp_path / 'es'} holds a 3-node cluster; run `esrag up --nodes 3` or set "
        "ESRAG_STATE_DIR to a new folder for 1 node(s)"
    )
    with pytest.raises(EsragError):
        localnode.planned_node_count(load_settings(state_dir=tmp_path, es_nodes=2))

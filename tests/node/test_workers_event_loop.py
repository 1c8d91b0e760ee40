"""api.event_loop: the event loop of the node process and its workers (auto: uvloop
when importable; asyncio; uvloop)."""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import shutil
import sys
from pathlib import Path

import pytest

from edgestate.devkit import example_bundle, make_publisher
from edgestate.node.config import ApiConfig
from edgestate.node.event_loop import loop_factory
from tests.node.conftest import start_node
from tests.node.test_modules_e2e import BUILD, deploy
from tests.node.test_workers import post

pytestmark = pytest.mark.timeout(180)
has_uvloop = importlib.util.find_spec("uvloop") is not None


def test_auto_is_the_default_and_a_missing_uvloop_falls_back(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert ApiConfig().event_loop == "auto"
    assert loop_factory("asyncio") is None
    assert (loop_factory("auto") is not None) == has_uvloop
    monkeypatch.setitem(sys.modules, "uvloop", None)  # what an uninstalled module does
    with caplog.at_level(logging.WARNING, logger="edgestate.node"):
        assert loop_factory("auto") is None  # quietly: nobody asked for uvloop
        assert "not installed" not in caplog.text
        assert loop_factory("uvloop") is None
    assert "uvloop is not installed" in caplog.text


@pytest.mark.skipif(not has_uvloop, reason="uvloop is not installed")
def test_uvloop_workers_serve_invocations(tmp_path: Path) -> None:
    factory = loop_factory("uvloop")
    assert factory is not None
    loop = factory()
    try:
        assert type(loop).__module__.startswith("uvloop")
        assert isinstance(loop, asyncio.AbstractEventLoop)
    finally:
        loop.close()
    publisher = make_publisher(tmp_path / "publisher")
    data = tmp_path / "node"
    data.mkdir()
    shutil.copy(publisher.policy_path, data / "trust-policy.json")
    config = tmp_path / "node.toml"
    config.write_text('[api]\nworkers = 2\nevent_loop = "uvloop"\n')
    node = start_node(data, "--no-mdns", config=config)
    try:
        assert deploy(node, example_bundle("kv_echo", publisher, BUILD)).status == 201
        for n in range(20):
            assert post(node.api, "/v1/invoke/kv-echo", f"k{n}={n}".encode())[:2] == (
                200,
                str(n).encode(),
            )
        log = node.log_path.read_text()
        assert "not installed" not in log
        assert "event loop: uvloop" in log  # the node process too, not only its workers
    finally:
        node.stop()


def test_asyncio_keeps_the_node_on_asyncios_loop(tmp_path: Path) -> None:
    data = tmp_path / "node"
    data.mkdir()
    config = tmp_path / "node.toml"
    config.write_text('[api]\nworkers = 0\nevent_loop = "asyncio"\n')
    node = start_node(data, "--no-mdns", config=config)
    try:
        assert "event loop: asyncio" in node.log_path.read_text()
    finally:
        node.stop()

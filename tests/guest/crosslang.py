"""Run one example module, in any SDK's language, through the real CLI and a real
node, and record what it did: per input the output (or the status it returned),
and afterwards the stored state of the documents it writes.

The same inputs must give the same record in every language: that is the
cross-language test of the SDKs (tests/guest/test_*_sdk.py).
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from click.testing import CliRunner

from edgestate.cli.main import cli
from edgestate.client import NodeClient
from edgestate.devkit import Publisher
from edgestate.errors import NodeAPIError
from edgestate.guest import EXAMPLES_DIR
from edgestate.store import Store

Outcome = str  # the output as text, or "status N"
State = dict[str, str]  # key -> value (hex), volatile values by their length only
Builder = Callable[[str, Path], Path]  # (example, build dir) -> wasm path

DOCUMENT = {"counter": "counters", "kv_echo": "kv", "session_store": "sessions"}
# Keys whose value is a clock reading: compared by length, not by value.
VOLATILE = re.compile(r":last_seen$")
_STATUS = re.compile(r"returned status (-?\d+)")


def inputs(example: str, prefix: str) -> list[bytes]:
    """The inputs every language's example gets; ``prefix`` keeps languages apart on one node."""
    p = prefix
    script = {
        "counter": [f"{p}hits", f"{p}hits", f"{p}other", f"{p}hits"],
        # "k=v=w" stores "v=w"; a missing key is status 5; an empty key is refused (3).
        "kv_echo": [f"{p}greeting=hello", f"{p}greeting", f"{p}k=v=w", f"{p}missing", "=x"],
        "session_store": [f"{p}abc", f"{p}abc", f"{p}xyz", f"{p}abc"],
    }[example]
    if not prefix:
        script += {"counter": [""], "kv_echo": [], "session_store": [""]}[example]
    return [s.encode() for s in script]


def _outcome_of_error(message: str) -> Outcome:
    found = _STATUS.search(message)
    if found is None:
        raise AssertionError(f"invocation failed without a status: {message}")
    return f"status {found.group(1)}"


def _state(items: list[tuple[str, bytes]], prefix: str) -> State:
    return {
        key[len(prefix) :]: f"len {len(value)}" if VOLATILE.search(key) else value.hex()
        for key, value in items
        if key.startswith(prefix)
    }


@dataclass(frozen=True)
class Record:
    """What one example did, comparable across languages."""

    outcomes: list[Outcome]
    state: State
    fuel: list[int]


def manifest_for(example: str, name: str | None = None) -> bytes:
    """The example's manifest, renamed to ``name`` (so languages deploy side by side)."""
    manifest = json.loads((EXAMPLES_DIR / f"{example}.manifest.json").read_text())
    if name is not None:
        manifest["name"] = name
    return json.dumps(manifest).encode()


def bundle_dir(wasm: Path, example: str, directory: Path, publisher: Publisher) -> Path:
    """Copy ``wasm`` with its manifest into ``directory`` and sign it with ``edgestate sign``."""
    directory.mkdir(parents=True, exist_ok=True)
    module = directory / f"{example}.wasm"
    module.write_bytes(wasm.read_bytes())
    (directory / f"{example}.manifest.json").write_bytes(manifest_for(example))
    result = CliRunner().invoke(cli, ["sign", str(module), "--key", str(publisher.key_path)])
    assert result.exit_code == 0, result.output
    return module


def run_local(wasm: Path, example: str, work: Path, publisher: Publisher) -> Record:
    """Sign and run ``wasm`` with ``edgestate invoke`` once per input, in a fresh data dir."""
    module = bundle_dir(wasm, example, work / "bundle", publisher)
    data = work / "data"
    outcomes: list[Outcome] = []
    fuel: list[int] = []
    runner = CliRunner()
    for payload in inputs(example, ""):
        args = ["invoke", str(module), "--data", str(data), "--trust", str(publisher.policy_path)]
        args += ["--input", payload.decode(), "--create-documents", "--json"]
        result = runner.invoke(cli, args)
        if result.exit_code == 0:
            reply = json.loads(result.output)
            outcomes.append(reply["output"])
            fuel.append(reply["fuel_used"])
        else:
            outcomes.append(_outcome_of_error(result.output))
    with Store.open(data) as store:  # `invoke` makes a bare store in a new --data dir
        items = store.scan(DOCUMENT[example], "", limit=1000).items
    return Record(outcomes, _state(items, ""), fuel)


def run_on_node(
    wasm: Path, example: str, lang: str, client: NodeClient, publisher: Publisher
) -> Record:
    """Deploy ``wasm`` as EXAMPLE-LANG, invoke it with the inputs under the prefix ``LANG:``."""
    name = f"{example.replace('_', '-')}-{lang}"
    manifest = manifest_for(example, name)
    blob = wasm.read_bytes()
    client.deploy(blob, manifest, publisher.sign(blob, manifest))
    prefix = f"{lang}:"
    outcomes: list[Outcome] = []
    fuel: list[int] = []
    for payload in inputs(example, prefix):
        try:
            output, headers = client.invoke(name, payload)
        except NodeAPIError as exc:
            outcomes.append(_outcome_of_error(str(exc)))
            continue
        outcomes.append(output.decode())
        fuel.append(int(headers["X-Edgestate-Fuel"]))
    doc = DOCUMENT[example]
    page = client.scan(doc, prefix, limit=1000)["items"]
    items = [(item["key"], base64.b64decode(item["base64"])) for item in page]
    return Record([o.replace(prefix, "") for o in outcomes], _state(items, prefix), fuel)


def assert_does_what_zig_does(
    wasm: Path,
    lang: str,
    example: str,
    build_dir: Path,
    publisher: Publisher,
    client: NodeClient,
    work: Path,
) -> None:
    """``wasm`` (``example`` written in ``lang``) gives the Zig example's outputs,
    statuses and stored state for the same inputs, locally and through a node."""
    from edgestate.guest import build_example

    zig = build_example(example, build_dir)
    local = run_local(wasm, example, work / lang, publisher)
    local_zig = run_local(zig, example, work / "zig", publisher)
    assert (local.outcomes, local.state) == (local_zig.outcomes, local_zig.state)
    assert local.state  # the inputs did write something
    on_node = run_on_node(wasm, example, lang, client, publisher)
    zig_on_node = run_on_node(zig, example, f"zig-vs-{lang}", client, publisher)
    assert (on_node.outcomes, on_node.state) == (zig_on_node.outcomes, zig_on_node.state)
    assert on_node.state

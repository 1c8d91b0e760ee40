"""Measure every SDK's examples side by side, in one run and one process.

    python scripts/bench_modules.py [--n 400] [--markdown]

Per language (Zig, C, Rust no_std, AssemblyScript) and example (counter,
kv_echo, session_store): module size, initial memory pages, fuel per
invocation, and the median instantiate and execute times the runtime reports
(``InvocationResult.instantiate_ns`` / ``execute_ns``) over N invocations of
the same inputs, interleaved across languages so machine load hits them alike.
Then checks the targets of issue 12: under 4 KB for Zig, C and Rust, under
16 KB for AssemblyScript, and instantiate under 2x the Zig example's.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import click

from edgestate.guest import EXAMPLES, EXAMPLES_DIR, build_example
from edgestate.guest.toolchains import build_as, build_c, build_rust
from edgestate.guest.wasminfo import inspect_wasm
from edgestate.runtime import Runtime, RuntimeConfig, TrustPolicy, generate_key, sign_module
from edgestate.runtime.policy import public_key_text
from edgestate.runtime.signing import raw_public_key
from edgestate.store import Store

REPO = Path(__file__).resolve().parents[1]
BUILD = REPO / "build" / "guest-wasm"
LANGS: dict[str, Callable[[str], Path]] = {
    "zig": lambda e: build_example(e, BUILD),
    "c": lambda e: build_c(EXAMPLES_DIR / f"{e}.c", BUILD),
    "rust": lambda e: build_rust(EXAMPLES_DIR / f"{e}.rs", BUILD),
    "as": lambda e: build_as(EXAMPLES_DIR / f"{e}.ts", BUILD),
}
SIZE_TARGET = {"zig": 4096, "c": 4096, "rust": 4096, "as": 16384}
INPUTS = {"counter": b"hits", "kv_echo": b"greeting=hello", "session_store": b"abc"}


def _policy(key: object) -> TrustPolicy:
    return TrustPolicy.from_dict(
        {
            "version": 1,
            "publishers": [
                {
                    "name": "bench",
                    "public_key": public_key_text(raw_public_key(key)),  # type: ignore[arg-type]
                    "documents": {"read": [], "write": ["counters", "kv", "sessions"]},
                    "limits": {
                        "fuel": 10_000_000,
                        "wall_time_ms": 1000,
                        "memory_pages": 64,
                        "max_output_bytes": 65536,
                    },
                }
            ],
        }
    )


@click.command()
@click.option("--n", default=400, show_default=True, help="Invocations per module.")
@click.option("--markdown", is_flag=True, help="Print the table as Markdown (docs/modules.md).")
def main(n: int, markdown: bool) -> None:
    """Build, load and time every language's examples."""
    key = generate_key()
    with tempfile.TemporaryDirectory() as tmp:
        store = Store.open(Path(tmp) / "data")
        for doc in ("counters", "kv", "sessions"):
            store.create_document(doc)
        runtime = Runtime(store, _policy(key), RuntimeConfig(cache_dir=Path(tmp) / "cache"))
        rows: dict[tuple[str, str], dict[str, float]] = {}
        samples: dict[tuple[str, str], tuple[list[int], list[int], list[int]]] = {}
        for example in EXAMPLES:
            manifest_text = (EXAMPLES_DIR / f"{example}.manifest.json").read_text()
            for lang, build in LANGS.items():
                wasm = build(example).read_bytes()
                info = inspect_wasm(wasm)
                name = f"{example.replace('_', '-')}-{lang}"
                manifest = manifest_text.replace(
                    f'"name": "{example.replace("_", "-")}"', f'"name": "{name}"'
                ).encode()
                runtime.load(wasm, manifest, sign_module(wasm, manifest, key))
                rows[(lang, example)] = {"size": info.size, "pages": info.initial_pages or 0}
                samples[(lang, example)] = ([], [], [])
            for i in range(n + 20):  # interleaved; the first 20 are warm-up
                for lang in LANGS:
                    name = f"{example.replace('_', '-')}-{lang}"
                    payload = INPUTS[example] + (
                        str(i % 50).encode() if example != "kv_echo" else b""
                    )
                    result = runtime.invoke(name, payload)
                    if i >= 20:
                        fuel, inst, exe = samples[(lang, example)]
                        fuel.append(result.fuel_used)
                        inst.append(result.instantiate_ns)
                        exe.append(result.execute_ns)
        runtime.close()
        store.close()
    for key_, (fuel, inst, exe) in samples.items():
        rows[key_].update(
            fuel=statistics.median(fuel),
            instantiate=statistics.median(inst) / 1000,
            execute=statistics.median(exe) / 1000,
        )
    failures: list[str] = []
    header = [
        "language",
        "example",
        "size (B)",
        "pages",
        "fuel",
        "instantiate (us)",
        "execute (us)",
    ]
    lines = []
    for example in EXAMPLES:
        zig_inst = rows[("zig", example)]["instantiate"]
        for lang in LANGS:
            r = rows[(lang, example)]
            ok_size = r["size"] < SIZE_TARGET[lang]
            ok_inst = r["instantiate"] < 2 * zig_inst
            if not ok_size:
                failures.append(f"{lang} {example}: {r['size']:.0f} B >= {SIZE_TARGET[lang]}")
            if not ok_inst:
                failures.append(
                    f"{lang} {example}: instantiate {r['instantiate']:.1f} us >= 2x zig's "
                    f"{zig_inst:.1f}"
                )
            lines.append(
                [
                    lang,
                    example,
                    f"{r['size']:.0f}" + ("" if ok_size else " (!)"),
                    f"{r['pages']:.0f}",
                    f"{r['fuel']:.0f}",
                    f"{r['instantiate']:.1f}" + ("" if ok_inst else " (!)"),
                    f"{r['execute']:.1f}",
                ]
            )
    if markdown:
        click.echo("| " + " | ".join(header) + " |")
        click.echo("|" + "---|" * len(header))
        for line in lines:
            click.echo("| " + " | ".join(line) + " |")
    else:
        widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]
        for line in [header, *lines]:
            click.echo("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)))
    click.echo(
        f"\nmedians of {n} invocations each, interleaved; targets: size < 4 KB "
        "(zig, c, rust), < 16 KB (as); instantiate < 2x zig's"
    )
    if failures:
        click.echo("targets missed:\n  " + "\n  ".join(failures))
        sys.exit(1)
    click.echo("all targets met")


if __name__ == "__main__":
    main()

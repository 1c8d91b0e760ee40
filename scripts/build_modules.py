"""Build the example guest modules (and, with --wat, the WAT test modules).

    python scripts/build_modules.py --out build/modules [--key publisher.key]

Writes NAME.wasm and NAME.manifest.json for each Zig example, and NAME.sig
when --key is given, so ``edgestate invoke`` can run them directly. Zig comes
from the ``ziglang`` package; builds are cached by source hash.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import click
import wasmtime

from edgestate.guest import EXAMPLES, EXAMPLES_DIR, PREBUILT_DIR, build_example
from edgestate.runtime import load_private_key, sign_module

REPO = Path(__file__).resolve().parents[1]
WAT_DIR = REPO / "tests" / "runtime" / "wat"


@click.command()
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=REPO / "build" / "modules",
    show_default=True,
)
@click.option(
    "--key",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Sign each example with this publisher key.",
)
@click.option("--wat", "with_wat", is_flag=True, help="Also compile tests/runtime/wat/*.wat.")
@click.option(
    "--update-prebuilt",
    is_flag=True,
    help="Also refresh the wasm shipped in edgestate/guest/prebuilt/ (after changing a source).",
)
def main(out: Path, key: Path | None, with_wat: bool, update_prebuilt: bool) -> None:
    """Build the example modules into OUT."""
    out.mkdir(parents=True, exist_ok=True)
    private = load_private_key(key) if key else None
    for name in EXAMPLES:
        built = build_example(name, REPO / "build" / "guest-wasm")
        if update_prebuilt:
            shutil.copy(built, PREBUILT_DIR / f"{name}.wasm")
        wasm = out / f"{name}.wasm"
        manifest = out / f"{name}.manifest.json"
        shutil.copy(built, wasm)
        shutil.copy(EXAMPLES_DIR / f"{name}.manifest.json", manifest)
        line = f"{wasm} ({wasm.stat().st_size} bytes)"
        if private is not None:
            sig = out / f"{name}.sig"
            sig.write_bytes(sign_module(wasm.read_bytes(), manifest.read_bytes(), private))
            line += f", signed -> {sig.name}"
        click.echo(line)
    if with_wat:
        for source in sorted(WAT_DIR.glob("*.wat")):
            target = out / "wat" / f"{source.stem}.wasm"
            target.parent.mkdir(exist_ok=True)
            target.write_bytes(wasmtime.wat2wasm(source.read_text()))
            click.echo(f"{target} ({target.stat().st_size} bytes)")


if __name__ == "__main__":
    main()

"""The example wasm shipped in the package is exactly what the sources build to."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgestate.guest import EXAMPLES, PREBUILT_DIR, build_example

BUILD = Path(__file__).resolve().parents[2] / "build" / "guest-wasm"


@pytest.mark.parametrize("name", EXAMPLES)
def test_prebuilt_example_matches_a_fresh_build(name: str) -> None:
    shipped = (PREBUILT_DIR / f"{name}.wasm").read_bytes()
    assert build_example(name, BUILD).read_bytes() == shipped, (
        f"edgestate/guest/prebuilt/{name}.wasm is stale: run "
        "scripts/build_modules.py --update-prebuilt"
    )


def test_without_the_toolchain_the_shipped_wasm_is_used(tmp_path: Path) -> None:
    from importlib.metadata import PackageNotFoundError

    import edgestate.guest as guest

    def no_zig() -> str:
        raise PackageNotFoundError("ziglang")

    assert (
        guest.example_wasm("counter", tmp_path, toolchain=no_zig)
        == (PREBUILT_DIR / "counter.wasm").read_bytes()
    )
    assert not list(tmp_path.iterdir())  # nothing was built

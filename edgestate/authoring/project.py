"""A module project: one source file, its manifest, a README and a test input.

    NAME/
      NAME.zig | NAME.c | NAME.rs | NAME.ts   the module (the counter example to start)
      NAME.manifest.json                     name NAME, documents, limits
      input.txt                              what `invoke` / `dev` send
      README.md                              build, sign + invoke, dev
      Cargo.toml, .cargo/config.toml         (Rust: `cargo build` works too)
      package.json                           (AssemblyScript: asc and the SDK from npm)

``edgestate build`` writes ``NAME.wasm`` beside the manifest, where ``sign``,
``invoke`` and ``deploy`` look by default. File stems use ``_`` for ``-``
(Rust and Zig file names are identifiers).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from edgestate.errors import ConfigError
from edgestate.guest import EXAMPLES_DIR, SDK_DIR
from edgestate.guest.toolchains import AS_PACKAGE, AS_SDK_DIR, RUST_SDK_DIR, RUST_STACK_BYTES

# Language -> source extension. `as` is AssemblyScript.
LANGUAGES = {"zig": "zig", "c": "c", "rust": "rs", "as": "ts"}
_NAME = re.compile(r"[a-z][a-z0-9-]{0,62}")
# Built, signed, secret and local state: never committed.
_IGNORED = ("*.wasm", "*.sig", "*.key", "data/", ".edgestate-build/", ".edgestate-dev/")
_IGNORED_TOOLS = ("target/", "node_modules/")


@dataclass(frozen=True)
class Project:
    """A module project on disk."""

    directory: Path
    name: str  # the manifest's
    lang: str  # a key of LANGUAGES
    source: Path
    manifest: Path

    @property
    def wasm(self) -> Path:
        """Where ``build`` writes the module (beside the manifest)."""
        return self.manifest.with_name(self.manifest.name.removesuffix(".manifest.json") + ".wasm")

    @property
    def input_file(self) -> Path:
        """The test input ``dev`` and the README's ``invoke`` send."""
        return self.directory / "input.txt"


def find_project(directory: Path, lang: str | None = None) -> Project:
    """The project in ``directory``: its one manifest and the source beside it."""
    manifests = sorted(directory.glob("*.manifest.json"))
    if len(manifests) != 1:
        raise ConfigError(
            f"{directory} is not a module project: expected one NAME.manifest.json, "
            f"found {len(manifests)} (make one with `edgestate new NAME --lang LANG`)"
        )
    manifest = manifests[0]
    stem = manifest.name.removesuffix(".manifest.json")
    langs = [lang] if lang else list(LANGUAGES)
    found = [(lg, directory / f"{stem}.{LANGUAGES[lg]}") for lg in langs]
    sources = [(lg, p) for lg, p in found if p.exists()]
    if len(sources) != 1:
        names = ", ".join(p.name for _, p in found)
        raise ConfigError(
            f"{directory}: expected one source beside {manifest.name} (one of {names}), "
            f"found {len(sources)}" + ("" if lang else "; pass --lang")
        )
    name = json.loads(manifest.read_text()).get("name", stem)
    return Project(directory, str(name), sources[0][0], sources[0][1], manifest)


def _readme(name: str, stem: str, lang: str) -> str:
    toolchain = {
        "zig": "Zig from the `ziglang` package (`pip install 'edgestate[sdk]'`)",
        "c": "clang from the `ziglang` package (`pip install 'edgestate[sdk]'`)",
        "rust": "a rustc with the wasm32-unknown-unknown std (Debian: "
        "`apt-get install rustc libstd-rust-dev-wasm32`)",
        "as": "AssemblyScript from npm (`npm install`, project-local)",
    }[lang]
    return f"""# {name}

An edgestate module in {dict(zig="Zig", c="C", rust="Rust", **{"as": "AssemblyScript"})[lang]}.
Toolchain: {toolchain}. The host ABI and the SDK: see edgestate's docs/modules.md.

The three commands that matter:

```sh
edgestate build                    # {stem}.wasm, lean; reports size and memory vs the manifest
edgestate keygen --out me && edgestate sign {stem}.wasm --key me.key && \\
  edgestate invoke {stem}.wasm --data ./data --trust trust-policy.json \\
    --input-file input.txt --create-documents
edgestate dev                      # a local node; rebuilds and redeploys on every save
```

`edgestate dev` serves the module at the URL it prints (POST the input) and
shows each invocation's fuel, instantiate / execute time and writes, and the
module's log lines.
"""


def _cargo_files(stem: str) -> dict[str, str]:
    cargo = f"""# `cargo build --offline --release` works too; `edgestate build` runs rustc itself.
[package]
name = "{stem}"
version = "0.1.0"
edition = "2021"

[lib]
path = "{stem}.rs"
crate-type = ["cdylib"]

[dependencies]
edgestate = {{ path = "{RUST_SDK_DIR}" }}

[profile.release]
opt-level = "z"
lto = true
codegen-units = 1
panic = "abort"
strip = "symbols"
"""
    config = f"""[build]
target = "wasm32-unknown-unknown"

[target.wasm32-unknown-unknown]
# A 64 KiB stack: rustc's default 1 MiB makes the module start with 17 pages.
rustflags = ["-C", "link-arg=-zstack-size={RUST_STACK_BYTES}"]
"""
    return {"Cargo.toml": cargo, ".cargo/config.toml": config}


def _package_json(name: str) -> str:
    return json.dumps(
        {
            "name": name,
            "private": True,
            "devDependencies": {
                "assemblyscript": json.loads((AS_SDK_DIR / "package.json").read_text())[
                    "devDependencies"
                ]["assemblyscript"],
                AS_PACKAGE: f"file:{AS_SDK_DIR}",
            },
        },
        indent=2,
    )


def new_project(name: str, lang: str, parent: Path) -> Project:
    """Create ``parent/NAME`` with the starter module in ``lang``; refuses an existing folder."""
    if not _NAME.fullmatch(name):
        raise ConfigError(f"module name {name!r}: use lower-case letters, digits and '-'")
    if lang not in LANGUAGES:
        raise ConfigError(f"language {lang!r}: one of {', '.join(LANGUAGES)}")
    directory = parent / name
    if directory.exists():
        raise ConfigError(f"{directory} exists; refusing to overwrite it")
    stem = name.replace("-", "_")
    ext = LANGUAGES[lang]
    files: dict[str, str] = {
        f"{stem}.{ext}": (EXAMPLES_DIR / f"counter.{ext}").read_text(),
        "input.txt": "visits",
        "README.md": _readme(name, stem, lang),
        ".gitignore": "\n".join((*_IGNORED, *_IGNORED_TOOLS)) + "\n",
    }
    manifest = json.loads((EXAMPLES_DIR / "counter.manifest.json").read_text())
    manifest.update(name=name, description=f"{name}: counts visits (edit me)")
    files[f"{stem}.manifest.json"] = json.dumps(manifest, indent=2) + "\n"
    if lang == "zig":
        # Zig imports only from the source's folder: the SDK lives beside it.
        files["edgestate.zig"] = (SDK_DIR / "edgestate.zig").read_text()
    elif lang == "c":
        files["edgestate.h"] = (SDK_DIR / "edgestate.h").read_text()
    elif lang == "rust":
        files.update(_cargo_files(stem))
    else:
        files["package.json"] = _package_json(name)
    for rel, text in files.items():
        path = directory / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return find_project(directory, lang)

"""``edgestate keygen``, ``sign`` and ``invoke``: publishing and running modules.

Library errors are caught here, at the edge, and printed as ``error [code]:
message`` with exit status 1.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import click

from edgestate.cli.errors_out import EXIT_ERROR, CommandError, command_path, fail, wants_json
from edgestate.errors import EdgestateError

# The runtime (wasmtime, cryptography) is imported inside each command: other
# commands must not pay for it at start-up.
if TYPE_CHECKING:
    from edgestate.runtime import InvocationResult


@contextmanager
def _library_errors() -> Iterator[None]:
    # The one error format (error: CODE: message, JSON under --json), also when a
    # command is invoked on its own rather than through the edgestate group.
    try:
        yield
    except EdgestateError as exc:
        ctx = click.get_current_context(silent=True)
        fail(exc.code, str(exc), EXIT_ERROR, as_json=wants_json(ctx), command=command_path(ctx))


@click.command()
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("publisher"),
    show_default=True,
    help="Path prefix: writes PREFIX.key (private, mode 0600) and PREFIX.pub.",
)
def keygen(out: Path) -> None:
    """Make an Ed25519 publisher key pair for signing modules."""
    from edgestate.runtime import generate_key, raw_public_key, save_private_key
    from edgestate.runtime.policy import public_key_text

    private, public = out.with_suffix(".key"), out.with_suffix(".pub")
    for path in (private, public):
        if path.exists():
            raise CommandError("file_exists", f"{path} exists; refusing to overwrite a key")
    key = generate_key()
    save_private_key(key, private)
    text = public_key_text(raw_public_key(key))
    public.write_text(text + "\n")
    click.echo(f"private key  {private}")
    click.echo(f"public key   {public}")
    click.echo(f'add to the trust policy as "public_key": "{text}"')


@click.command()
@click.argument("module", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--manifest",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Manifest JSON [default: MODULE's stem + .manifest.json].",
)
@click.option(
    "--key",
    "key_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Private key from `edgestate keygen`.",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Signature file [default: MODULE's stem + .sig].",
)
@click.option(
    "--force",
    is_flag=True,
    help="Replace an existing signature file even if it signs other bytes.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def sign(
    module: Path,
    manifest: Path | None,
    key_path: Path,
    out: Path | None,
    force: bool,
    as_json: bool,
) -> None:
    """Sign MODULE.wasm with its manifest, after checking a node would load them.

    MODULE must be a wasm binary that compiles, imports only host ABI functions,
    exports the manifest's entry and its memory, and starts within the manifest's
    memory_pages. An existing signature file that signs other bytes is not
    replaced without --force. A module carrying debug sections, or far larger
    than its code, is signed with a warning on stderr (how to strip it).
    """
    from edgestate.cli.signing import check_for_signing, lean_report, write_signature
    from edgestate.runtime import bundle_paths, load_private_key, sign_module

    default_manifest, default_signature = bundle_paths(module)
    manifest = manifest or default_manifest
    target = out or default_signature
    with _library_errors():
        if not manifest.exists():
            raise CommandError("manifest_missing", f"no manifest {manifest}; pass --manifest")
        wasm, manifest_bytes = module.read_bytes(), manifest.read_bytes()
        parsed = check_for_signing(module, wasm, manifest_bytes)
        signature = sign_module(wasm, manifest_bytes, load_private_key(key_path))
        write_signature(target, signature, wasm, manifest_bytes, force=force)
    warnings = lean_report(wasm)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "name": parsed.name,
                    "version": parsed.version,
                    "signature": str(target),
                    "wasm_bytes": len(wasm),
                    "warnings": [w.to_json() for w in warnings],
                }
            )
        )
        return
    click.echo(f"signed {parsed.name} {parsed.version} -> {target}")


def _format_ns(ns: int) -> str:
    return f"{ns / 1000:.1f} us" if ns < 1_000_000 else f"{ns / 1_000_000:.2f} ms"


def _print_result(result: InvocationResult, as_json: bool) -> None:
    try:
        text: str | None = result.output.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if as_json:
        click.echo(
            json.dumps(
                {
                    "module": result.module,
                    "status": result.status,
                    "output": text,
                    "output_base64": base64.b64encode(result.output).decode(),
                    "fuel_used": result.fuel_used,
                    "writes": result.writes,
                    "timings_ns": {
                        "instantiate": result.instantiate_ns,
                        "execute": result.execute_ns,
                        "commit": result.commit_ns,
                    },
                }
            )
        )
        return
    click.echo(f"status       {result.status}")
    click.echo(f"fuel used    {result.fuel_used}")
    click.echo(f"writes       {result.writes}")
    click.echo(
        f"timings      instantiate {_format_ns(result.instantiate_ns)}, "
        f"execute {_format_ns(result.execute_ns)}, commit {_format_ns(result.commit_ns)}"
    )
    click.echo(f"output       {len(result.output)} bytes")
    click.echo(text if text is not None else result.output.hex())


@click.command()
@click.argument("module", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--data",
    "data_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Store data directory (created if absent).",
)
@click.option(
    "--trust",
    required=True,
    envvar="EDGESTATE_TRUST_POLICY",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Trust policy JSON (schemas/trust-policy.schema.json) [env EDGESTATE_TRUST_POLICY].",
)
@click.option("--input", "input_text", help="Input as UTF-8 text.")
@click.option("--input-file", type=click.File("rb"), help="Input from a file ('-': stdin).")
@click.option(
    "--manifest",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Manifest [default: beside MODULE].",
)
@click.option(
    "--signature",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Signature file [default: beside MODULE].",
)
@click.option(
    "--cache-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Compiled-module cache (default: none, compile every run).",
)
@click.option(
    "--create-documents",
    is_flag=True,
    help="Create the documents the manifest may write if they do not exist.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def invoke(
    module: Path,
    data_dir: Path,
    trust: Path,
    input_text: str | None,
    input_file: BinaryIO | None,
    manifest: Path | None,
    signature: Path | None,
    cache_dir: Path | None,
    create_documents: bool,
    as_json: bool,
) -> None:
    """Run a signed MODULE once against the store in --data and print the result."""
    from edgestate.node.config import store_dir_of
    from edgestate.runtime import Runtime, RuntimeConfig, TrustPolicy
    from edgestate.store import Store

    if input_text is not None and input_file is not None:
        raise click.UsageError("give --input or --input-file, not both")
    payload = input_file.read() if input_file is not None else (input_text or "").encode()
    with _library_errors():
        policy = TrustPolicy.load(trust)
        with (
            Store.open(store_dir_of(data_dir)) as store,
            Runtime(store, policy, RuntimeConfig(cache_dir=cache_dir)) as runtime,
        ):
            loaded = runtime.load_files(module, manifest, signature)
            if create_documents:
                for doc in sorted(loaded.sandbox.manifest.writes):
                    store.create_document(doc)
            result = runtime.invoke(loaded.name, payload)
    _print_result(result, as_json)


commands: list[click.Command] = [keygen, sign, invoke]

"""Writing modules: ``edgestate new``, ``build`` and ``dev``.

    edgestate new NAME --lang rust|zig|c|as   a project folder with a starter module
    edgestate build [DIR] [--json]            compile it lean; report size and memory
    edgestate dev [DIR] [--node URL]          watch, rebuild, sign, redeploy, tail costs

The toolchains and the authoring package are imported only when a command runs.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from edgestate.cli.output import edge_errors

LANG_CHOICE = click.Choice(["rust", "zig", "c", "as"])


@click.command("new")
@click.argument("name")
@click.option("--lang", required=True, type=LANG_CHOICE, help="as = AssemblyScript.")
@click.option(
    "--dir",
    "parent",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="Folder to create NAME in.",
)
@edge_errors
def new(name: str, lang: str, parent: Path) -> None:
    """Create a module project NAME: source, manifest, README and a test input."""
    from edgestate.authoring import new_project

    project = new_project(name, lang, parent)
    click.echo(f"created {project.directory}/")
    for path in sorted(project.directory.rglob("*")):
        if path.is_file():
            click.echo(f"  {path.relative_to(project.directory)}")
    click.echo(f"next: cd {project.directory} && edgestate build && edgestate dev")


def _pages(n: int | None) -> str:
    return "no memory of its own" if n is None else f"{n} pages ({n * 64} KiB)"


@click.command("build")
@click.argument(
    "directory",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=Path("."),
)
@click.option("--lang", type=LANG_CHOICE, help="When the folder holds sources in several.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@edge_errors
def build(directory: Path, lang: str | None, as_json: bool) -> None:
    """Build the project in DIRECTORY to NAME.wasm and check it against the manifest."""
    from edgestate.authoring import build_project, find_project

    project = find_project(directory, lang)
    report = build_project(project, directory / ".edgestate-build")
    if as_json:
        click.echo(json.dumps(report.to_json()))
    else:
        sections = ", ".join(f"{n} {b} B" for n, b in report.custom_sections) or "none"
        click.echo(f"built        {report.wasm} ({report.lang}, {report.toolchain})")
        click.echo(f"size         {report.size} bytes ({report.code_bytes} of code)")
        click.echo(f"custom       {sections}")
        click.echo(
            f"memory       starts at {_pages(report.initial_pages)}; "
            f"manifest allows {report.memory_pages if report.memory_pages else 'the ceiling'}"
        )
        click.echo(f"entry        {report.entry}")
        for warning in report.warnings:
            click.echo(f"warning: {warning}", err=True)
        for problem in report.problems:
            click.echo(f"problem: {problem}", err=True)
    if report.problems:
        raise SystemExit(1)


@click.command("dev")
@click.argument(
    "directory",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=Path("."),
)
@click.option("--lang", type=LANG_CHOICE, help="When the folder holds sources in several.")
@click.option(
    "--node",
    "node_url",
    help="Deploy to this node instead of a local one (it must trust the dev key).",
)
@click.option("--token", envvar="EDGESTATE_TOKEN", help="Admin token of --node.")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=0, help="Port of the front [any free]."
)
@edge_errors
def dev(
    directory: Path, lang: str | None, node_url: str | None, token: str | None, port: int
) -> None:
    """Watch DIRECTORY: rebuild, sign with a dev key, redeploy; print each request's costs."""
    from edgestate.authoring import find_project
    from edgestate.authoring.dev import run_dev

    run_dev(find_project(directory, lang), click.echo, node_url=node_url, token=token, port=port)


commands: list[click.Command] = [new, build, dev]

"""``edgestate backup``: a consistent copy of a data directory's store, hot."""

from __future__ import annotations

from pathlib import Path

import click

from edgestate.cli.options import DATA_OPTION
from edgestate.cli.output import edge_errors


@click.command("backup")
@click.argument("dest", type=click.Path(path_type=Path))
@DATA_OPTION
@edge_errors
def backup(dest: Path, data: Path) -> None:
    """Copy the store of DATA into the new directory DEST, consistently, even while a
    node runs on it (LMDB's compacting copy of the last commit).

    Restore: stop the node, replace DATA/store with DEST, start the node.
    """
    from edgestate.node.config import store_dir_of
    from edgestate.store import backup_store

    size = backup_store(store_dir_of(data), dest)
    click.echo(f"backed up {store_dir_of(data)} to {dest} ({size} bytes)")


commands: list[click.Command] = [backup]

"""`stageline vault`: the master key that wraps every environment's data key.

(Not `cli/vault.py`: run as a script, `cli/` comes first on the path and that name would hide
the `vault` package.)
"""

from __future__ import annotations

from pathlib import Path

import click

from cli.context import actor, run
from cli.output import done, emit_json
from cli.params import json_option
from models.errors import BadInput
from services.unit import Units
from vault.keys import generate_key_text, read_key_file


@click.group()
def vault() -> None:
    """The master key that wraps every environment's data key."""


@vault.command("generate-key")
def vault_generate_key() -> None:
    """Print a new random master key (base64) for STAGELINE_MASTER_KEY.

    No --json: the output is the key alone, one line, made for $(...), and nothing is stored.
    """
    click.echo(generate_key_text())


@vault.command("rotate")
@click.option(
    "--new-key-file",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="File (mode 0600) holding the new base64 key.",
)
@json_option
def vault_rotate(new_key_file: Path, as_json: bool) -> None:
    """Re-wrap every environment's data key with a new master key; secrets stay as they are."""
    new_key = read_key_file(new_key_file)
    key_file = str(new_key_file.absolute())

    async def work(units: Units) -> None:
        if units.remote:
            raise BadInput(
                "'vault rotate' runs where the master key is, on the server's machine: run "
                "it there without STAGELINE_URL (stop the server first)"
            )
        async with units.write() as w:
            old_key_id = w.key.key_id
            count = await w.secrets.rotate_master_key(new_key, actor=actor())
        units.keys.replace(new_key)  # committed: from now on the data keys unwrap with it
        if as_json:
            emit_json(
                {
                    "environments": count,
                    "from_key_id": old_key_id,
                    "key_id": new_key.key_id,
                    "key_file": key_file,
                }
            )
            return
        done(
            f"re-wrapped the data keys of {count} environment(s) with key {new_key.key_id}; "
            f"point STAGELINE_MASTER_KEY_FILE at {new_key_file} from now on"
        )

    run(work)


COMMANDS = [vault]

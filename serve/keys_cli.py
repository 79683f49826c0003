"""``lorastack keys create|list|revoke``: API keys for the front door.

    export LORASTACK_API_KEY=$(lorastack keys create --role inference --label ci)
"""

from __future__ import annotations

import os
from typing import Optional

import typer
from lorastack.serve.keys import ENV_KEYS, KeyStore, Role, parse_role
from rich.console import Console
from rich.markup import escape

from lorastack.errors import LorastackError
from lorastack.report import folding_table

console = Console()
err = Console(stderr=True)
keys = typer.Typer(
    help="API keys for the front door. While none exists, it lets every request in.", no_args_is_help=True
)
_ROLES = " or ".join(Role)
_CHOICES = " or ".join(f"--role {r}" for r in Role)


@keys.command()
def create(
    role: Optional[str] = typer.Option(
        None, help=f"Required: {_ROLES}. inference calls models; admin may also manage adapters and the server."
    ),
    label: str = typer.Option("", help="A note to tell keys apart in lorastack keys list (who or what uses it)."),
) -> None:
    """Make a new key and print it, once: only its digest is kept. The key goes to stdout, notes to stderr."""
    if role is None:
        raise LorastackError("Say which role the key grants.", f"Add {_CHOICES}.")
    info, key = KeyStore().create(parse_role(role), label)
    named = f" ({escape(label)})" if label else ""
    err.print(f"Created {info.role} key [bold]{info.id}[/]{named}:", soft_wrap=True)
    console.print(key, markup=False, highlight=False, soft_wrap=True)
    err.print(
        "This is the only time the key is shown: store it now. Clients send it as their OpenAI API key.",
        soft_wrap=True,
    )


@keys.command("list")
def list_() -> None:
    """List keys by id, role and label (never the keys themselves)."""
    rows = KeyStore().list()
    if not rows:
        console.print("No API keys stored. Create one with: lorastack keys create --role inference")
    else:
        table = folding_table("id", "role", "label", "created")
        for k in rows:
            table.add_row(k.id, k.role, escape(k.label), k.created)
        console.print(table)
    for variable, role in ENV_KEYS.items():
        if os.environ.get(variable, "").strip():
            console.print(f"Also accepted: ${variable} ({role}), from the environment.", soft_wrap=True)


@keys.command()
def revoke(key_id: str = typer.Argument(..., metavar="ID", help="The key's id, as lorastack keys list shows.")) -> None:
    """Delete a key: the front door refuses it from the next request on."""
    info = KeyStore().revoke(key_id)
    named = f" ({escape(info.label)})" if info.label else ""
    console.print(f"Revoked {info.role} key [bold]{info.id}[/]{named}.")


def add_commands(app: typer.Typer) -> None:
    app.add_typer(keys, name="keys")

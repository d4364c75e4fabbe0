"""`netprog`: the training commands (`training.cli`) and the serving commands (`serving.cli`).

The one module that imports both halves; neither imports the other (tests/test_house_rules.py).
"""

from __future__ import annotations

import click

from serving.cli import audit, serve, token_hash
from training.cli import main as training
from training.monitor_cli import monitor
from training.update_cli import update

__all__ = ["main"]

main = click.Group(
    name="netprog",
    help=training.help,
    params=training.params,
    callback=training.callback,
    commands=[*training.commands.values(), update, monitor, serve, audit, token_hash],
)
"""The `netprog` command: training's group (its `--verbose` included) plus serving's commands."""

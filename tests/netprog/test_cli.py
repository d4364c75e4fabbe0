"""`netprog`: one command line with training's and serving's commands (netprog/cli.py)."""

from __future__ import annotations

from click.testing import CliRunner

from netprog.cli import main

TRAINING_COMMANDS = ("simulate", "validate", "train", "promote", "rollback")
"""Training commands of the v1 contract (shared/DESIGN.md) that the command line has."""
SERVING_COMMANDS = ("serve", "audit", "token-hash")


def test_netprog_offers_every_training_and_serving_command():
    result = CliRunner().invoke(main, ["--help"])

    assert result.exit_code == 0
    for command in (*TRAINING_COMMANDS, *SERVING_COMMANDS):
        assert command in main.commands
        assert f"  {command}" in result.output


def test_netprog_keeps_the_verbose_option_of_training():
    assert any("--verbose" in parameter.opts for parameter in main.params)

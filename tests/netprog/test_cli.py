"""`netprog`: one command line with training's and serving's commands (netprog/cli.py)."""

from __future__ import annotations

import os
import subprocess
import sys

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


def test_verbose_logs_progress_although_bentoml_internals_configured_logging_at_import(tmp_path):
    # circus (imported with BentoML's server internals, store/bentoml_compat.py) calls
    # logging.basicConfig() when imported: a second basicConfig without force was a no-op, and
    # `netprog -v train` printed none of its steps (tests/training/test_atomicity.py waits for
    # one). A fresh interpreter, as the installed command runs.
    script = (
        "import logging, sys\n"
        "from netprog.cli import main\n"
        "assert logging.root.handlers, 'circus no longer configures logging at import'\n"
        "main(['-v', 'dictionary'], standalone_mode=False)\n"
        "logging.getLogger('training.pipeline').info('fitting ensembles')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "BENTOML_HOME": str(tmp_path)},
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert "fitting ensembles" in result.stderr.splitlines()

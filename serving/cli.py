"""The service's commands: `netprog serve`, `netprog audit [verify|head]`, `netprog token-hash`."""

from __future__ import annotations

import json
import os
import secrets
import sys
from collections import deque
from pathlib import Path

import click

from serving.exceptions import ServingError
from serving.settings import hash_token, load_settings
from store import registry
from store.exceptions import BundleIntegrityError, RegistryError

__all__ = ["audit", "serve", "token_hash"]

SERVICE = "serving.service:NetPrognosis"
PROJECT_ROOT = Path(__file__).resolve().parent.parent
EXIT_AUDIT_PROBLEM = 1


@click.command()
@click.option("--port", type=click.IntRange(1, 65535), default=3000, show_default=True)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Interface to bind; 0.0.0.0 exposes the service to the network (set API tokens first).",
)
@click.pass_context
def serve(ctx: click.Context, port: int, host: str) -> None:
    """Serve the HTTP API (BentoML), training the synthetic default model first if none exists.

    Replaces this process with `bentoml serve serving.service:NetPrognosis`.
    """
    try:
        settings = load_settings()
        registry.verify(registry.get_model(settings.model_tag))
    except (ServingError, BundleIntegrityError) as error:
        raise click.ClickException(str(error)) from None
    except RegistryError as error:
        if settings.model_tag:
            raise click.ClickException(str(error)) from None
        click.echo(
            "The model store holds no model: training the default on a SYNTHETIC cohort "
            "(not for clinical use) ...",
            err=True,
        )
        _train_synthetic_default(ctx)
    command = [sys.executable, "-m", "bentoml", "serve", SERVICE, "--host", host]
    command += ["--port", str(port), "--working-dir", str(PROJECT_ROOT)]
    os.execve(sys.executable, command, {**os.environ, "BENTOML_DO_NOT_TRACK": "true"})


def _train_synthetic_default(ctx: click.Context) -> None:
    """Run the `train` command of the command line this one belongs to (`netprog`), which
    serving does not import: training sits beside serving, not below it."""
    root = ctx.find_root()
    train = None
    if isinstance(root.command, click.Group):
        train = root.command.get_command(root, "train")
    if train is None:
        raise click.ClickException(
            "the model store holds no model and this command line has no `train`; run "
            "`netprog train --data synthetic`, then `netprog serve`"
        )
    ctx.invoke(train, data="synthetic")


@click.group(invoke_without_command=True)
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the records as JSON lines.")
@click.pass_context
def audit(ctx: click.Context, limit: int, as_json: bool) -> None:
    """List the latest audit records; `netprog audit verify` checks the whole chain.

    Records hold no patient values: a keyed digest of the input, the model, the caller's
    token-hash prefix and the time.
    """
    if ctx.invoked_subcommand is not None:
        return
    log = _open_log()
    try:
        records = deque(log.records(), maxlen=limit)
    except ValueError:
        raise click.ClickException(
            f"{log.path} holds a line that is not JSON; run `netprog audit verify`"
        ) from None
    if not records:
        click.echo(f"{log.path}: no records")
        return
    for record in records:
        if as_json:
            click.echo(json.dumps(record, sort_keys=True))
        else:
            click.echo(
                f"{record.get('seq'):>7} {record.get('time')} {record.get('prediction_id')} "
                f"{record.get('route')} {record.get('model_tag')} {record.get('caller')}"
            )


@audit.command()
def verify() -> None:
    """Check that no record was edited, inserted or deleted; exit 1 if one was."""
    from serving.audit import verify as verify_log

    report = verify_log(_open_log())
    click.echo(report.summary())
    if not report.ok:
        sys.exit(EXIT_AUDIT_PROBLEM)


@audit.command()
def head() -> None:
    """Print the head (record count and last hash): keep copies elsewhere as an anchor."""
    log = _open_log()
    current = log.read_head()
    if current is None:
        raise click.ClickException(f"{log.head_path} does not exist (no record written yet)")
    click.echo(json.dumps(current, sort_keys=True))


def _open_log():
    from serving.audit import AuditLog

    try:
        return AuditLog.from_settings(load_settings(), create_key=False)
    except ServingError as error:
        raise click.ClickException(str(error)) from None


@click.command("token-hash")
@click.option("--generate", is_flag=True, help="Make a new random token and print it too.")
def token_hash(generate: bool) -> None:
    """Print the SHA-256 of an API token, for NETPROG_API_TOKEN_HASHES.

    The token is read from standard input (or a hidden prompt), never from the command line,
    so that it stays out of shell history and process lists.
    """
    if generate:
        token = secrets.token_urlsafe(32)
        click.echo(f"token: {token}")
    elif sys.stdin.isatty():
        token = click.prompt("token", hide_input=True)
    else:
        token = sys.stdin.read().strip()
    if not token:
        raise click.UsageError("the token must not be empty")
    click.echo(f"sha256: {hash_token(token)}" if generate else hash_token(token))

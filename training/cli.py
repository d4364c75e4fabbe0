"""The `netprog` command line: simulate, validate, calibrate and train."""

from __future__ import annotations

import json
import logging
import sys

import click

from training.exceptions import TrainingError

logger = logging.getLogger("netprog")

EXIT_INVALID_DATA = 2


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Log progress details.")
def main(verbose: bool) -> None:
    """Prognosis after embolotherapy for NET liver metastases.

    Default models are trained on a SYNTHETIC cohort and are not for clinical use until
    retrained on real data.
    """
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(message)s")


@main.command()
@click.option("--n", "n_patients", type=click.IntRange(min=1), default=2000, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--centers", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False))
def simulate(n_patients: int, seed: int, centers: int, out_path: str) -> None:
    """Write a synthetic cohort (CSV or Parquet by the extension of --out)."""
    from training.synthetic import simulate_cohort, write_cohort

    try:
        path = write_cohort(simulate_cohort(n_patients, seed, n_centers=centers), out_path)
    except TrainingError as error:
        raise click.UsageError(str(error)) from None
    click.echo(f"wrote {n_patients} synthetic patients to {path}")


@main.command()
@click.argument("path", type=click.Path(dir_okay=False))
@click.option(
    "--feature",
    "features",
    multiple=True,
    help="A column proposed as a model input (repeatable); true_* columns are refused.",
)
def validate(path: str, features: tuple[str, ...]) -> None:
    """Check a cohort file; exit 0 if valid, 2 with row-level messages otherwise."""
    from training.validate import read_cohort, validate_cohort

    try:
        cohort = validate_cohort(read_cohort(path), feature_columns=features)
    except TrainingError as error:
        click.echo(str(error), err=True)
        sys.exit(EXIT_INVALID_DATA)
    click.echo(f"{path}: valid cohort of {len(cohort)} patients")


@main.command()
def calibrate() -> None:
    """Print the calibrated free parameters of data/cohort_spec.yaml (to paste into it)."""
    from training.calibrate import calibrate as run_calibration

    click.echo(json.dumps(run_calibration(), indent=2))


@main.command()
@click.option(
    "--data",
    required=True,
    help="Cohort file (CSV or Parquet), or 'synthetic[:N]' for the synthetic default cohort.",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--n-bootstrap", type=click.IntRange(min=2), default=20, show_default=True)
@click.option("--folds", type=click.IntRange(min=2), default=5, show_default=True)
@click.option("--jobs", type=int, default=2, show_default=True, help="Parallel workers (joblib).")
@click.option(
    "--label",
    type=click.Choice(["synthetic", "real"]),
    default=None,
    help="Cohort label; default: synthetic when the cohort has true_* columns.",
)
@click.option("--report-dir", type=click.Path(file_okay=False), default=None)
def train(data, seed, n_bootstrap, folds, jobs, label, report_dir) -> None:
    """Fit, evaluate and register a model bundle in the BentoML model store."""
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from training.pipeline import resolve_cohort
    from training.pipeline import train as run_training

    console = Console(stderr=True)
    try:
        cohort = resolve_cohort(data, seed)
    except TrainingError as error:
        console.print(str(error), markup=False, highlight=False)
        sys.exit(EXIT_INVALID_DATA)
    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("validating", total=None)
        run = run_training(
            cohort,
            seed=seed,
            n_bootstrap=n_bootstrap,
            n_splits=folds,
            n_jobs=jobs,
            cohort_label=label,
            report_dir=report_dir,
            progress=lambda step: progress.update(task, description=step),
        )
    _print_summary(console, run)


def _print_summary(console, run) -> None:
    from rich.table import Table

    table = Table(
        title=f"{run.tag} — trained on {run.bundle.metadata['trained_on']} data "
        f"({run.bundle.metadata['n_patients']} patients), cross-validated"
    )
    for column in ("endpoint", "model", "Harrell C", "Uno C", "IBS", "cal. slope 24 mo"):
        table.add_column(column)
    for endpoint, models in run.bundle.metadata["metrics"].items():
        for name, figures in models.items():
            primary = " (primary)" if run.bundle.primary[endpoint] == name else ""
            table.add_row(
                endpoint,
                name + primary,
                *(
                    "–" if figures[k] is None else f"{figures[k]:.3f}"
                    for k in ("harrell_c", "uno_c", "ibs", "calibration_slope_24")
                ),
            )
    console.print(table)
    state = "promoted to production" if run.promoted else "registered as a candidate"
    console.print(f"{run.tag} {state}; report: {run.report_html}")
    if run.bundle.metadata["trained_on"] == "synthetic":
        console.print("Trained on SYNTHETIC data: not for clinical use.")


@main.command()
@click.argument("tag")
@click.option("--reason", default="", help="Why this model is promoted (recorded).")
def promote(tag: str, reason: str) -> None:
    """Point production at TAG."""
    from training import registry

    try:
        registry.set_production(tag, reason)
    except TrainingError as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"production is now {registry.production_tag()}")


@main.command()
def rollback() -> None:
    """Restore the previous production model."""
    from training import registry

    try:
        tag = registry.rollback()
    except TrainingError as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"production is now {tag}")


@main.command("models")
def list_models() -> None:
    """List registered bundles, newest first, marking production."""
    from training import registry

    production = registry.production_tag()
    for model in registry.list_models():
        mark = "*" if str(model.tag) == production else " "
        click.echo(
            f"{mark} {model.tag}  {model.info.labels.get('trained_on', '?'):9}  "
            f"{model.info.creation_time:%Y-%m-%d %H:%M}"
        )

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

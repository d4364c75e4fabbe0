"""`netprog update`: a registered model updated to a centre's own patients (training side)."""

from __future__ import annotations

import sys

import click

from model.exceptions import FitDiverged
from training.exceptions import (
    UNFITTABLE,
    CohortLabelError,
    CohortReadError,
    CohortValidationError,
    GateRefusedError,
    StoreError,
    TrainingError,
    UpdateInputError,
)

__all__ = ["update"]

EXIT_OK, EXIT_FAILED, EXIT_INVALID_DATA, EXIT_REFUSED = 0, 1, 2, 3

UPDATE_EXIT_CODES = """\b
Exit codes:
  0  updated and registered (and promoted, with --promote)
  1  failed: anything but the data (a database unreachable, a bug)
  2  invalid input: the cohort failed validation, was not declared with --label, has too
     few events or could not be fitted (a fit diverged on it), or --from names no
     registered model; nothing was registered
  3  refused by the promotion gate (--promote): the update stays registered, production
     is unchanged
"""


@click.command(epilog=UPDATE_EXIT_CODES)
@click.option(
    "--data",
    required=True,
    help="The centre's cohort: a CSV or Parquet file, or an SQLAlchemy URL with --query; "
    "the same columns and validation as `netprog train`.",
)
@click.option("--query", default=None, help="SQL returning the cohort table (database --data).")
@click.option(
    "--label",
    type=click.Choice(["synthetic", "real"]),
    required=True,
    help="What the cohort is: real (a registry) or synthetic (simulated); never inferred.",
)
@click.option(
    "--from",
    "from_tag",
    default=None,
    metavar="TAG",
    help="The registered model to update (default: production); see `netprog models`.",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--holdout-fraction",
    type=click.FloatRange(0.0, 1.0, max_open=True),
    default=0.0,
    show_default=True,
    help="Share of local patients kept out of the update for the promotion gate (by the "
    "training rule on patient_id); 0 uses every patient, as a small centre should.",
)
@click.option(
    "--promote",
    "promote_after",
    is_flag=True,
    help="Run the promotion gate after updating: promote if it passes, exit 3 if not.",
)
@click.option(
    "--jobs",
    type=int,
    default=2,
    show_default=True,
    help="Processes for the gate's bootstrap refits (with --promote).",
)
def update(**options) -> None:
    """Update a registered model to a centre's patients and register the result.

    Per endpoint the data choose among: no change, a re-estimated baseline hazard, plus a
    calibration slope, plus revision of the terms that disagree (shrunk toward the original
    coefficients), or a full refit (docs/retraining.md). The boosted model takes the first
    three only. The result is registered as a candidate for `netprog promote`.
    """
    from rich.console import Console

    console = Console(stderr=True)
    try:
        code = _update(console, options)
    except GateRefusedError as error:
        console.print(str(error), markup=False, highlight=False)
        code = EXIT_REFUSED
    except (CohortLabelError, CohortReadError, CohortValidationError, UpdateInputError) as error:
        console.print(str(error), markup=False, highlight=False)
        code = EXIT_INVALID_DATA
    except FitDiverged as error:
        console.print(f"{UNFITTABLE}: {error}", markup=False, highlight=False)
        code = EXIT_INVALID_DATA
    except (TrainingError, StoreError) as error:
        console.print(str(error), markup=False, highlight=False)
        code = EXIT_FAILED
    if code != EXIT_OK:
        sys.exit(code)


def _update(console, options: dict) -> int:
    from training.cohorts import resolve_cohort
    from training.sources import describe_source
    from training.update_run import update as run_update
    from training.updating import METHODS

    cohort = resolve_cohort(options["data"], options["seed"], options["query"])
    run = run_update(
        cohort,
        cohort_label=options["label"],
        base_tag=options["from_tag"],
        seed=options["seed"],
        holdout_fraction=options["holdout_fraction"],
        source=describe_source(options["data"], options["query"]),
        progress=lambda step: console.print(step, markup=False, highlight=False),
    )
    for endpoint, families in run.decisions.items():
        for name, decision in families.items():
            primary = " (primary)" if run.bundle.primary[endpoint] == name else ""
            revised = f"; revised: {', '.join(decision.revised)}" if decision.revised else ""
            click.echo(
                f"{endpoint} {name}{primary}: {decision.method} "
                f"({METHODS[decision.method]}){revised}"
            )
    updating = run.bundle.metadata["updating"]
    click.echo(
        f"{run.tag} registered as a candidate, updated from {run.base_tag} on "
        f"{updating['n_local']} local patients "
        + ", ".join(f"{e.upper()} {n} events" for e, n in updating["local_events"].items())
    )
    if options["promote_after"]:
        from training import gate

        gate.promote(
            run.tag,
            reason="passed the promotion gate (netprog update --promote)",
            n_jobs=options["jobs"],
        )
        click.echo(f"{run.tag} promoted to production")
    return EXIT_OK

"""`netprog monitor`: calibration and discrimination of the deployed models, for schedulers."""

from __future__ import annotations

import sys

import click

from training.exceptions import SourceUnavailableError, StoreError, TrainingError
from training.monitor_run import DEFAULT_WINDOW_MONTHS
from training.monitoring import DEFAULT_FALSE_ALARM, DEFAULT_NULL_STREAMS

__all__ = ["monitor"]

EXIT_STABLE = 0
EXIT_FAILED = 1
EXIT_INVALID_DATA = 2
EXIT_DRIFT = 3

MONITOR_EXIT_CODES = """\b
Exit codes:
  0  stable: no drift flagged
  1  failed: the store or a database could not be read, a bug
  2  invalid data: row-level messages, nothing computed
  3  drift flagged (at the stated false-alarm rate)
"""


@click.command(epilog=MONITOR_EXIT_CODES)
@click.option(
    "--data",
    required=True,
    help="Followed patients: the cohort columns plus treatment_date (CSV, Parquet or a "
    "database URL with --query).",
)
@click.option("--query", default=None, help="SQL returning the outcomes table (database --data).")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False),
    default="monitoring",
    show_default=True,
    help="Folder for monitor.html and monitor.json.",
)
@click.option(
    "--window-months",
    type=click.IntRange(min=1, max=24),
    default=DEFAULT_WINDOW_MONTHS,
    show_default=True,
    help="Width of the treatment-date windows of the report.",
)
@click.option(
    "--false-alarm",
    type=click.FloatRange(min=0.001, max=0.2),
    default=DEFAULT_FALSE_ALARM,
    show_default=True,
    help="Probability per run of flagging a correctly calibrated model.",
)
@click.option(
    "--as-of",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    default=None,
    help="Data cut (default: the latest follow-up in the data).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seeds the control limit.")
def monitor(data, query, out_dir, window_months, false_alarm, as_of, seed) -> None:
    """Monitor the deployed models on patients treated after deployment.

    Each patient is judged by the model in production at their treatment date (from the
    production pointer's history); observed and predicted survival at 12 and 24 months,
    observed/expected events, calibration slope and Uno's C, per window of treatment date;
    a CUSUM flags drift with the stated false-alarm rate.
    """
    import pandas as pd

    from training.monitor_report import write_monitor_report
    from training.monitor_run import monitor_cohort
    from training.sources import read_source

    try:
        cohort = read_source(data, query)
        summary = monitor_cohort(
            cohort,
            as_of=None if as_of is None else pd.Timestamp(as_of),
            window_months=window_months,
            false_alarm=false_alarm,
            n_streams=DEFAULT_NULL_STREAMS,
            seed=seed,
        )
    except (SourceUnavailableError, StoreError) as error:
        click.echo(str(error), err=True)
        sys.exit(EXIT_FAILED)
    except TrainingError as error:
        click.echo(str(error), err=True)
        sys.exit(EXIT_INVALID_DATA)
    path_html, path_json = write_monitor_report(summary, out_dir)
    drift = summary["drift"]
    flagged = [f"{c['endpoint'].upper()} {c['direction']}" for c in drift["charts"] if c["flagged"]]
    verdict = f"DRIFT ({', '.join(flagged)})" if flagged else "stable"
    click.echo(
        f"{summary['n_monitored']} patients monitored: {verdict} at a false-alarm rate of "
        f"{drift['false_alarm_rate']:.1%} per run; report {path_html}, summary {path_json}"
    )
    sys.exit(EXIT_DRIFT if flagged else EXIT_STABLE)

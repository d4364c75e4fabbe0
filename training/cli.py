"""The `netprog` command line: simulate, validate, calibrate, train, promote, roll back."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

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
)
from training.holdout import DEFAULT_HOLDOUT_FRACTION

logger = logging.getLogger("netprog")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INVALID_DATA = 2
EXIT_REFUSED = 3


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Log progress details.")
def main(verbose: bool) -> None:
    """Prognosis after embolotherapy for NET liver metastases.

    Default models are trained on a SYNTHETIC cohort and are not for clinical use until
    retrained on real data.
    """
    # force: circus, imported with BentoML's server internals before this runs, configures the
    # root logger at import, which would make this call a no-op and hide every progress line.
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(message)s", force=True
    )


@main.command()
@click.option("--n", "n_patients", type=click.IntRange(min=1), default=2000, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--centers", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False))
@click.option(
    "--effects",
    type=click.Choice(["shrunk", "published"]),
    default=None,
    help="Modality-within-grade effects: shrunk across grades (the default) or Table 1's "
    "published point estimates, for sensitivity analyses.",
)
def simulate(n_patients: int, seed: int, centers: int, out_path: str, effects: str | None) -> None:
    """Write a synthetic cohort (CSV or Parquet by the extension of --out)."""
    from training.synthetic import simulate_cohort, write_cohort

    try:
        cohort = simulate_cohort(n_patients, seed, n_centers=centers, modality_effects=effects)
        path = write_cohort(cohort, out_path)
    except TrainingError as error:
        raise click.UsageError(str(error)) from None
    click.echo(f"wrote {n_patients} synthetic patients to {path}")


@main.command()
@click.argument("source")
@click.option("--query", default=None, help="SQL returning the cohort (when SOURCE is a URL).")
@click.option(
    "--feature",
    "features",
    multiple=True,
    help="A column proposed as a model input (repeatable); true_* columns are refused.",
)
def validate(source: str, query: str | None, features: tuple[str, ...]) -> None:
    """Check a cohort (CSV or Parquet file, or database URL with --query).

    Exit 0 if valid; 2 with row-level messages otherwise; 1 if a database cannot be reached.
    """
    from training.exceptions import SourceUnavailableError
    from training.sources import describe_source, read_source
    from training.validate import validate_cohort

    try:
        cohort = validate_cohort(read_source(source, query), feature_columns=features)
    except SourceUnavailableError as error:
        click.echo(str(error), err=True)
        sys.exit(EXIT_FAILED)
    except TrainingError as error:
        click.echo(str(error), err=True)
        sys.exit(EXIT_INVALID_DATA)
    click.echo(f"{describe_source(source, query)}: valid cohort of {len(cohort)} patients")
    from training.imputation import is_incomplete
    from training.missing_data import summary_lines

    for line in summary_lines(cohort) if is_incomplete(cohort) else []:
        click.echo(line)


@main.command()
def calibrate() -> None:
    """Print the calibrated free parameters of data/cohort_spec.yaml (to paste into it)."""
    from training.calibrate import calibrate as run_calibration

    click.echo(json.dumps(run_calibration(), indent=2))


TRAIN_EXIT_CODES = """\b
Exit codes (also written to --run-record):
  0  trained and registered (and promoted, with --promote)
  1  failed: anything but the data (database or Dask cluster unreachable, a bug)
  2  invalid data: the cohort failed validation, was not declared with --label, or could
     not be fitted (a fit diverged on it); nothing was registered (or a bad command line)
  3  refused by the promotion gate (--promote): the candidate stays registered, production
     is unchanged
"""

PROMOTE_EXIT_CODES = """\b
Exit codes:
  0  promoted (passed the gate, or forced with a reason)
  1  failed: no such model, an altered artifact, nothing to roll back
  2  bad command line (e.g. --force without --reason)
  3  refused by the promotion gate: production is unchanged
"""


def _estimator_params(device: str) -> dict[str, dict]:
    """Constructor arguments per model family for the chosen device."""
    return {"xgboost": {"device": device}} if device != "cpu" else {}


@main.command(epilog=TRAIN_EXIT_CODES)
@click.option(
    "--data",
    required=True,
    help="Cohort: a CSV or Parquet file, an SQLAlchemy URL with --query "
    "(postgresql://user@host:5432/registry; password from PGPASSWORD or ~/.pgpass), or "
    "'synthetic[:N]' for the synthetic default cohort.",
)
@click.option("--query", default=None, help="SQL returning the cohort table (database --data).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--n-bootstrap", type=click.IntRange(min=2), default=20, show_default=True)
@click.option("--folds", type=click.IntRange(min=2), default=5, show_default=True)
@click.option("--jobs", type=int, default=2, show_default=True, help="Parallel workers (joblib).")
@click.option(
    "--label",
    type=click.Choice(["synthetic", "real"]),
    default=None,
    help="What the cohort is: real (a registry) or synthetic (simulated). Required for every "
    "cohort but the built-in --data synthetic; never inferred from the columns.",
)
@click.option("--report-dir", type=click.Path(file_okay=False), default=None)
@click.option(
    "--holdout-fraction",
    type=click.FloatRange(0.0, 1.0, max_open=True),
    default=DEFAULT_HOLDOUT_FRACTION,
    show_default=True,
    help="Share of patients held out (by a fixed rule on patient_id) for the test and the gate.",
)
@click.option(
    "--dask-scheduler",
    metavar="ADDRESS",
    default=None,
    help="Run folds, centres and bootstrap fits on this Dask cluster (tcp://host:8786); "
    "same results as locally for the same seed. --jobs is then ignored.",
)
@click.option(
    "--device",
    type=click.Choice(["cpu", "cuda"]),
    default="cpu",
    show_default=True,
    help="Device of the boosted models (xgboost).",
)
@click.option(
    "--promote",
    "promote_after",
    is_flag=True,
    help="Run the promotion gate after training: promote if it passes, exit 3 if not.",
)
@click.option(
    "--run-record",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write a JSON record of the run here (tag, status, exit code, timings, metrics, gate "
    "decision), also when the run fails.",
)
def train(**options) -> None:
    """Fit, evaluate and register a model bundle in the BentoML model store."""
    from rich.console import Console

    console = Console(stderr=True)
    record = RunRecord(options)
    try:
        record.code = _train(console, options, record)
    except GateRefusedError as error:
        record.fail(EXIT_REFUSED, "refused", error)
        record.body["gate"] = error.decision
        console.print(str(error), markup=False, highlight=False)
    except CohortLabelError as error:
        record.fail(EXIT_INVALID_DATA, "invalid_label", error)
        console.print(str(error), markup=False, highlight=False)
    except (CohortReadError, CohortValidationError) as error:
        record.fail(EXIT_INVALID_DATA, "invalid_data", error)
        console.print(str(error), markup=False, highlight=False)
    except FitDiverged as error:
        record.fail(EXIT_INVALID_DATA, "invalid_data", error)
        console.print(f"{UNFITTABLE}: {error}", markup=False, highlight=False)
    except (TrainingError, StoreError) as error:
        record.fail(EXIT_FAILED, "failed", error)
        console.print(str(error), markup=False, highlight=False)
    except Exception as error:
        record.fail(EXIT_FAILED, "failed", error)
        logger.exception("training failed")
    finally:
        record.write()
    if record.code != EXIT_OK:
        sys.exit(record.code)


def _train(console, options: dict, record: RunRecord) -> int:
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from training import gate
    from training.devices import require_device
    from training.pipeline import builtin_default_spec, declared_label, resolve_cohort
    from training.pipeline import train as run_training
    from training.sources import describe_source

    require_device(options["device"])
    label = declared_label(options["data"], options["label"])
    source = describe_source(options["data"], options["query"])
    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("reading and validating the cohort", total=None)
        started = time.perf_counter()
        cohort = resolve_cohort(options["data"], options["seed"], options["query"])
        record.body["timings"]["load"] = round(time.perf_counter() - started, 3)
        record.body["data"].update(n_patients=len(cohort))
        run = run_training(
            cohort,
            seed=options["seed"],
            n_bootstrap=options["n_bootstrap"],
            n_splits=options["folds"],
            n_jobs=options["jobs"],
            cohort_label=label,
            report_dir=options["report_dir"],
            progress=lambda step: progress.update(task, description=step),
            holdout_fraction=options["holdout_fraction"],
            estimator_params=_estimator_params(options["device"]),
            dask_scheduler=options["dask_scheduler"],
            source=source,
            evidence=builtin_default_spec(options["data"]),
        )
    record.trained(run)
    _print_summary(console, run)
    if not options["promote_after"] or run.promoted:
        return EXIT_OK
    started = time.perf_counter()
    decision = gate.promote(
        run.tag,
        reason="passed the promotion gate (netprog train --promote)",
        n_jobs=options["jobs"],
    )
    record.body["timings"]["gate"] = round(time.perf_counter() - started, 3)
    record.body.update(gate=decision, status="promoted")
    _print_gate(console, decision)
    console.print(f"{run.tag} promoted to production")
    return EXIT_OK


class RunRecord:
    """The JSON record of one `netprog train` run, for schedulers (`--run-record`)."""

    def __init__(self, options: dict):
        from training.sources import describe_source

        self.path = options["run_record"]
        self.code = EXIT_FAILED
        self.started = time.perf_counter()
        self.body: dict = {
            "command": "train",
            "status": "failed",
            "exit_code": EXIT_FAILED,
            "tag": None,
            "production": None,
            "started_at": _now(),
            "finished_at": None,
            "duration_s": None,
            "data": {"source": describe_source(options["data"], options["query"])},
            "options": {
                k: options[k]
                for k in (
                    "seed",
                    "n_bootstrap",
                    "folds",
                    "jobs",
                    "holdout_fraction",
                    "device",
                    "dask_scheduler",
                    "promote_after",
                )
            },
            "timings": {},
            "metrics": None,
            "gate": None,
            "error": None,
        }

    def trained(self, run) -> None:
        metadata = run.bundle.metadata
        self.body.update(
            tag=run.tag,
            status="promoted" if run.promoted else "registered",
            metrics={
                "cross_validated": metadata["metrics"],
                "held_out": metadata["held_out_metrics"],
                "primary": metadata["primary"],
            },
        )
        self.body["data"].update(
            label=metadata["trained_on"],
            data_fingerprint=metadata["data_fingerprint"],
            n_development=metadata["n_patients"],
            n_held_out=metadata["holdout"]["n_patients"],
        )
        self.body["timings"].update(run.timings)

    def fail(self, code: int, status: str, error: BaseException) -> None:
        self.code = code
        self.body.update(status=status, error=f"{type(error).__name__}: {error}")

    def write(self) -> None:
        from store import registry

        self.body.update(
            exit_code=self.code,
            finished_at=_now(),
            duration_s=round(time.perf_counter() - self.started, 3),
        )
        if self.path is None:
            return
        try:
            self.body["production"] = registry.production_tag()
        except (OSError, ValueError):
            self.body["production"] = None
        path = Path(self.path)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.tmp")
        temporary.write_text(json.dumps(self.body, indent=2, default=str), encoding="utf-8")
        os.replace(temporary, path)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _figure(value) -> str:
    return "–" if value is None else f"{value:.3f}"


def _mean_sd(figures: dict, key: str) -> str:
    sd = figures.get(f"{key}_sd")
    return _figure(figures.get(key)) + ("" if sd is None else f" ± {sd:.3f}")


def _print_summary(console, run) -> None:
    from rich.table import Table

    metadata = run.bundle.metadata
    table = Table(
        title=f"{run.tag} — trained on {metadata['trained_on']} data "
        f"({metadata['n_patients']} patients, {metadata['holdout']['n_patients']} held out)"
    )
    for column in ("endpoint", "model", "CV Harrell C", "CV Uno C", "CV IBS", "CV slope 24 mo"):
        table.add_column(column)
    for column in ("held-out Harrell C", "held-out slope 24 mo"):
        table.add_column(column)
    cv_figures = ("harrell_c", "uno_c", "ibs", "calibration_slope_24")
    for endpoint, models in metadata["metrics"].items():
        for name, figures in models.items():
            primary = " (primary)" if run.bundle.primary[endpoint] == name else ""
            held_out = metadata["held_out_metrics"].get(endpoint, {}).get(name, {})
            table.add_row(
                endpoint,
                name + primary,
                *(_mean_sd(figures, k) for k in cv_figures),
                *(_figure(held_out.get(k)) for k in ("harrell_c", "calibration_slope_24")),
            )
    console.print(table)
    console.print(
        f"CV: mean ± SD over the {metadata.get('cv_folds')} cross-validation folds, each fold's "
        "model judged on that fold's own test rows."
    )
    state = "promoted to production" if run.promoted else "registered as a candidate"
    console.print(f"{run.tag} {state}; report: {run.report_html}")
    if metadata["trained_on"] == "synthetic":
        console.print("Trained on SYNTHETIC data: not for clinical use.")


def _print_gate(console, decision: dict) -> None:
    from rich.table import Table

    from training.gate import checks_table

    table = Table(title=f"Promotion gate: {decision['candidate']} vs {decision['production']}")
    for column in ("patients", "endpoint", "check", "candidate", "production", "result"):
        table.add_column(column)
    for row in checks_table(decision):
        table.add_row(*row)
    console.print(table)
    if decision.get("verdict"):
        console.print(decision["verdict"], markup=False, highlight=False)
    for evaluation_set in decision["evaluation_sets"]:
        used = "used" if evaluation_set["used"] else "NOT used (too few events)"
        console.print(
            f"{evaluation_set['name']}: {evaluation_set['n_patients']} patients, {used}; "
            f"{evaluation_set['note']}",
            markup=False,
            highlight=False,
        )


@main.command(epilog=PROMOTE_EXIT_CODES)
@click.argument("tag")
@click.option(
    "--force",
    is_flag=True,
    help="Promote even if the gate refuses (requires --reason; recorded with the decision).",
)
@click.option("--reason", default="", help="Why this model is promoted (recorded).")
@click.option(
    "--jobs", type=int, default=2, show_default=True, help="Processes for the bootstrap refits."
)
def promote(tag: str, force: bool, reason: str, jobs: int) -> None:
    """Point production at TAG if it passes the promotion gate.

    The gate compares TAG with the current production model on the held-out patients of
    both (those neither was trained on), by paired bootstrap: it promotes on non-inferiority,
    when for both endpoints the lower bound of the 95 % interval of ΔC (Harrell and Uno) is
    above -0.01 and TAG's calibration slope's 95 % interval at 24 months overlaps 0.8-1.25.
    Where TAG's held-out patients have fewer than 100 events for an endpoint (an update keeps
    none by default), the patients TAG was fitted on take their place: TAG's procedure is
    refitted on 200 bootstrap resamples of them and the same limits apply to the
    optimism-corrected figures.
    """
    from rich.console import Console

    from training import gate

    if force and not reason.strip():
        raise click.UsageError("--force needs --reason TEXT (it is recorded with the promotion)")
    console = Console(stderr=True)
    try:
        decision = gate.promote(tag, force=force, reason=reason, n_jobs=jobs)
    except GateRefusedError as error:
        _print_gate(console, error.decision)
        console.print(str(error), markup=False, highlight=False)
        sys.exit(EXIT_REFUSED)
    except (TrainingError, StoreError) as error:
        console.print(str(error), markup=False, highlight=False)
        sys.exit(EXIT_FAILED)
    _print_gate(console, decision)
    if decision["forced"]:
        console.print(f"Forced past the gate; reason recorded: {reason}", markup=False)
    click.echo(f"production is now {decision['candidate']}")


@main.command()
def rollback() -> None:
    """Restore the previous production model."""
    from store import registry

    try:
        tag = registry.rollback()
    except (TrainingError, StoreError) as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"production is now {tag}")


@main.command()
def dictionary() -> None:
    """Print the training cohort's data dictionary (Markdown), derived from the schemas."""
    from training.dictionary import dictionary_markdown

    click.echo(dictionary_markdown(), nl=False)


@main.command("models")
def list_models() -> None:
    """List registered bundles, newest first, marking production."""
    from store import registry

    production = registry.production_tag()
    for model in registry.list_models():
        mark = "*" if str(model.tag) == production else " "
        click.echo(
            f"{mark} {model.tag}  {model.info.labels.get('trained_on', '?'):9}  "
            f"{model.info.creation_time:%Y-%m-%d %H:%M}"
        )

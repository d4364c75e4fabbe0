"""Fault injection against the product as deployed: `bentoml serve` and the `netprog` CLI.

- the model is missing, or one of its artifacts altered or removed: the service refuses to
  start, before any worker, saying how to train or naming the artifact;
- the audit log cannot be written (a full disk, a path that is not a file, a record cut short
  by a crash): every prediction is refused with 503 and no prognosis, never answered
  unaudited, and predictions resume, chained on, once the fault is repaired;
- a malformed cohort file (empty, truncated, UTF-16, Latin-1, binary, a huge line, a million
  or ten million rows of garbage) given to `netprog validate` and `netprog train --data`:
  exit code 2 with a message that says what is wrong and never a value, no traceback, within
  `PEAK_RSS_LIMIT` of memory (the peak resident set of the `netprog` process).

A training job killed mid-fit leaves the store and the production pointer byte for byte as
they were (tests/training/test_atomicity.py); the slow test here (``make reliability``) kills
`netprog train` at several steps and at several moments of its registration, where the staged
model enters the store: the store then holds the models it had, or those and one whole new
model, the pointer never moves, and the next run cleans up what the killed ones left.

The figures are printed (``pytest -s``) and written to
``test-artifacts/reliability/malformed-cohorts.json``.
"""

from __future__ import annotations

import io
import json
import os
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from serving.audit import AuditLog, verify
from serving.settings import Settings
from store import registry
from tests.reliability.conftest import AUTH
from tests.served import served
from training.synthetic import simulate_cohort

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "reliability"
EXAMPLES = ROOT / "data" / "examples"
NETPROG = Path(sys.executable).with_name("netprog")
EXIT_INVALID_DATA = 2
PEAK_RSS_LIMIT = 1 << 30
"""Peak resident memory allowed to `netprog` on a malformed file: 1 GiB. Measured: under
400 MiB, most of it the imports of `netprog train`."""
CLI_SECONDS = 120
ROUTE, BATCH_ROUTE = "/v1/prognosis", "/v1/prognosis/batch"
STARTUP_FAILURE_SECONDS = 90


# --- The model: missing or altered ------------------------------------------------------------


def _refused_start(env: dict[str, str], tmp_path: Path) -> tuple[str, float]:
    """Start `bentoml serve` expecting it to exit; its output tail and the seconds it took."""
    started = time.monotonic()
    with (
        pytest.raises(RuntimeError, match="exited while starting") as refused,
        served(env, tmp_path / "server.log", startup_seconds=STARTUP_FAILURE_SECONDS),
    ):
        pass
    return str(refused.value), time.monotonic() - started


def test_bentoml_serve_with_no_trained_model_refuses_to_start_and_says_how_to_train(tmp_path):
    audit_log = tmp_path / "audit" / "audit.jsonl"
    env = {"BENTOML_HOME": str(tmp_path / "empty-home"), "NETPROG_AUDIT_LOG": str(audit_log)}

    output, seconds = _refused_start(env, tmp_path)

    assert "no trained model 'netprog-bundle:latest'" in output
    assert "train one with `netprog train --data PATH`" in output
    assert not audit_log.exists(), "no worker may start"
    assert seconds < STARTUP_FAILURE_SECONDS


def _append_a_byte(path: Path) -> None:
    path.write_bytes(path.read_bytes() + b"\0")


@pytest.mark.parametrize(
    ("alter", "expected"),
    [(_append_a_byte, "was altered after training"), (Path.unlink, "is missing")],
    ids=["altered", "removed"],
)
def test_bentoml_serve_with_an_altered_or_removed_artifact_refuses_to_start_naming_it(
    reliability_model_tag, tmp_path, alter, expected
):
    source = Path(registry.get_model(reliability_model_tag).path)
    home = tmp_path / "home"
    copy = home / "models" / registry.MODEL_NAME / source.name
    shutil.copytree(source, copy)
    alter(copy / registry.BUNDLE_FILE)
    audit_log = tmp_path / "audit" / "audit.jsonl"
    env = {
        "BENTOML_HOME": str(home),
        "NETPROG_MODEL_TAG": reliability_model_tag,
        "NETPROG_AUDIT_LOG": str(audit_log),
    }

    output, seconds = _refused_start(env, tmp_path)

    assert f"artifact {registry.BUNDLE_FILE} of model {reliability_model_tag} {expected}" in output
    assert not audit_log.exists(), "no worker may start"
    assert seconds < STARTUP_FAILURE_SECONDS


# --- The audit log: full, unwritable, damaged -----------------------------------------------


@dataclass(frozen=True)
class AuditFault:
    """A way to break the audit log of a running server, the reason a refusal must give,
    and the repair after which predictions must resume."""

    name: str
    reason: str
    inject: Callable[[Path], None]
    repair: Callable[[Path], None]


def _aside(log: Path) -> Path:
    return log.with_name(log.name + ".aside")


def _fill_the_disk(log: Path) -> None:
    """Writes to /dev/full fail with ENOSPC, as on a full disk."""
    log.rename(_aside(log))
    log.symlink_to("/dev/full")


def _make_unwritable(log: Path) -> None:
    """A folder where the file was: no process, root included, can open it for writing."""
    log.rename(_aside(log))
    log.mkdir()


def _cut_the_last_record_short(log: Path) -> None:
    """What a crash or a full disk in the middle of a write leaves: a partial last line."""
    _aside(log).write_bytes(log.read_bytes())
    with open(log, "ab") as handle:
        handle.write(b'{"v":1,"seq":')


def _restore(log: Path) -> None:
    if log.is_dir() and not log.is_symlink():
        log.rmdir()
    else:
        log.unlink()
    _aside(log).rename(log)


AUDIT_FAULTS = (
    AuditFault("full disk", "the audit log could not be written (No space left on device)",
               _fill_the_disk, _restore),
    AuditFault("unwritable log", "the audit log could not be written (Is a directory)",
               _make_unwritable, _restore),
    AuditFault("record cut short", "the audit log is damaged and must be repaired by the "
               "operator", _cut_the_last_record_short, _restore),
)  # fmt: skip


def _example(name: str) -> dict:
    return json.loads((EXAMPLES / name).read_text(encoding="utf-8"))


def test_an_audit_log_that_cannot_be_written_refuses_every_prediction_until_repaired(serve):
    server = serve()
    log = server.audit_log
    single, batch = _example("g2_pancreas_sirt.json"), _example("batch.json")
    answered: list[str] = []
    with httpx.Client(base_url=server.base, headers=AUTH, timeout=60) as client:
        for fault in AUDIT_FAULTS:
            before = client.post(ROUTE, json=single)
            fault.inject(log)
            refused = [client.post(ROUTE, json=single) for _ in range(3)]
            refused.append(client.post(BATCH_ROUTE, json=batch))
            fault.repair(log)
            after = client.post(ROUTE, json=single)

            assert [before.status_code, after.status_code] == [200, 200], fault.name
            answered += [before.json()["prediction_id"], after.json()["prediction_id"]]
            for response in refused:
                assert response.status_code == 503, fault.name
                assert response.json() == {
                    "error": f"prediction refused: {fault.reason}; no prediction is returned "
                    "without an audit record"
                }, fault.name
    audit = AuditLog.from_settings(Settings(audit_log=log), create_key=False)
    records = list(audit.records())
    assert [record["prediction_id"] for record in records] == answered
    assert [record["seq"] for record in records] == list(range(2 * len(AUDIT_FAULTS)))
    report = verify(audit)
    assert report.ok, report.summary()
    output = server.output()
    assert output.count("prediction refused, not audited") == 4 * len(AUDIT_FAULTS)
    assert "No space left on device" in output
    assert "ends in an incomplete record" in output


# --- Malformed cohort files ---------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """One `netprog` command: exit code, output, wall seconds and peak resident bytes."""

    code: int
    output: str
    seconds: float
    peak_rss: int


PEAK_RSS_WRAPPER = """
import resource, subprocess, sys
code = subprocess.run(sys.argv[2:]).returncode
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
open(sys.argv[1], "w").write(str(peak * 1024))
sys.exit(code if code >= 0 else 128 - code)
"""
"""Runs a command and writes its peak RSS (bytes). Measured from a small wrapper because Linux
credits a child with its parent's high-water mark when it execs: `netprog` started straight
from this test process would report the test process's peak, not its own."""


def run_netprog(args: list[str], home: Path, log: Path) -> Run:
    """Run `netprog args` in a fresh process: exit code, output, wall time and peak RSS."""
    env = {**os.environ, "BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "true"}
    peak = log.with_suffix(".peak")
    command = [sys.executable, "-c", PEAK_RSS_WRAPPER, str(peak), str(NETPROG), *args]
    started = time.monotonic()
    with open(log, "wb") as output:
        completed = subprocess.run(
            command, env=env, stdout=output, stderr=subprocess.STDOUT, timeout=CLI_SECONDS
        )
    seconds = time.monotonic() - started
    return Run(
        completed.returncode, log.read_text(errors="replace"), seconds, int(peak.read_text())
    )


DICTIONARY_COLUMNS = [
    "patient_id", "center", "treatment_date", "age_years", "sex", "who_grade", "ki67_percent",
    "tumor_burden_percent", "primary_site", "primary_resected", "prior_hepatic_treatment",
    "extrahepatic_metastases", "somatostatin_analog", "biologic_therapy",
    "cytotoxic_chemotherapy", "modality", "hpfs_months", "hpfs_event", "os_months", "os_event",
]  # fmt: skip
GARBAGE_ROW = b"x7,zz,notadate,abc,?,G9,-1,200,mars,maybe,2,3,yes,no,x,XYZ,-5,7,-9,8\n"
"""A row in which every column is wrong; its values must never appear in a message."""
GARBAGE_VALUES = ("notadate", "mars", "maybe", "XYZ")
"""Values of the garbage row and of the Latin-1 case (a centre "Zürich-C…")."""


def valid_csv() -> bytes:
    """A valid 50-patient cohort, dictionary columns only."""
    buffer = io.StringIO()
    simulate_cohort(50, seed=5)[DICTIONARY_COLUMNS].to_csv(buffer, index=False)
    return buffer.getvalue().encode("utf-8")


def garbage_rows(path: Path, n_rows: int) -> Path:
    """The dictionary's header and `n_rows` garbage rows, written a block at a time."""
    block = GARBAGE_ROW * 100_000
    with open(path, "wb") as handle:
        handle.write(",".join(DICTIONARY_COLUMNS).encode() + b"\n")
        for _ in range(n_rows // 100_000):
            handle.write(block)
        handle.write(GARBAGE_ROW * (n_rows % 100_000))
    return path


def _truncated(text: bytes) -> tuple[bytes, str]:
    cut = len(text) * 3 // 5
    row = text.count(b"\n", 0, cut)  # the header is line 1, so this is the cut data row
    return text[:cut], f"row {row}, column"


def _latin1(text: bytes) -> tuple[bytes, str]:
    lines = text.split(b"\n")
    lines[7] = lines[7].replace(b",C", ",Zürich-C".encode("latin-1"), 1)
    broken = b"\n".join(lines)
    position = broken.index("ü".encode("latin-1"))
    return broken, f"byte {position} (line 8) is not (Latin-1 or another encoding?)"


def _huge_line(text: bytes) -> tuple[bytes, str]:
    header = text.split(b"\n", 1)[0]
    return header + b"\n" + b"9" * (64 << 20) + b"\n", "line 2 is longer than 1024 KiB"


MALFORMED: dict[str, Callable[[bytes], tuple[bytes, str]]] = {
    "empty": lambda text: (b"", "could not be read as csv: the file is empty"),
    "truncated": _truncated,
    "utf-16": lambda text: (
        text.decode().encode("utf-16"),
        "must be UTF-8 text, but it starts with a UTF-16 byte-order mark",
    ),
    "utf-16 without mark": lambda text: (
        text.decode().encode("utf-16-le"),
        "must be UTF-8 text, but byte 1 (line 1) is a NUL byte",
    ),
    "latin-1": _latin1,
    "binary": lambda text: (random.Random(0).randbytes(1 << 20), "must be UTF-8 text, but byte"),
    "huge line": _huge_line,
}
FIGURES: dict[str, dict] = {}


def _check_refused(run: Run, expected: str, command: str, case: str, size: int) -> None:
    FIGURES[f"{command} {case}"] = {
        "bytes": size,
        "exit_code": run.code,
        "peak_rss_mib": round(run.peak_rss / 2**20, 1),
        "seconds": round(run.seconds, 2),
    }
    print(
        f"\n{command} {case}: {size:,} bytes, exit {run.code}, peak RSS "
        f"{run.peak_rss / 2**20:.0f} MiB, {run.seconds:.1f} s"
    )
    assert run.code == EXIT_INVALID_DATA, run.output
    assert expected in " ".join(run.output.split()), run.output
    assert "Traceback" not in run.output
    assert run.peak_rss < PEAK_RSS_LIMIT


def _refuse_with_both_commands(path: Path, expected: str, case: str, tmp_path: Path) -> None:
    home, record = tmp_path / "home", tmp_path / "run.json"
    validate = run_netprog(["validate", str(path)], home, tmp_path / "validate.log")
    train = run_netprog(
        ["train", "--data", str(path), "--label", "real", "--run-record", str(record)],
        home,
        tmp_path / "train.log",
    )
    for command, run in (("validate", validate), ("train", train)):
        _check_refused(run, expected, command, case, path.stat().st_size)
        for value in (*GARBAGE_VALUES, "rich-C"):
            assert value not in run.output
    assert json.loads(record.read_text())["status"] == "invalid_data"
    assert not (home / "models" / registry.MODEL_NAME).exists(), "nothing may be registered"


@pytest.mark.parametrize("case", list(MALFORMED))
def test_a_malformed_cohort_file_exits_2_with_a_clear_message_in_bounded_memory(case, tmp_path):
    content, expected = MALFORMED[case](valid_csv())
    path = tmp_path / "cohort.csv"
    path.write_bytes(content)

    _refuse_with_both_commands(path, expected, case, tmp_path)


@pytest.mark.parametrize(
    ("n_rows", "expected"),
    [
        (1_000_000, "validation stopped after row 10000 at 1000 problems"),
        (10_000_000, "must have at most 1,000,000 data rows (lines after the header)"),
    ],
    ids=["1M", "10M"],
)
def test_millions_of_garbage_rows_exit_2_with_the_first_problems_in_bounded_memory(
    n_rows, expected, tmp_path
):
    path = garbage_rows(tmp_path / "garbage.csv", n_rows)
    try:
        _refuse_with_both_commands(path, expected, f"{n_rows:,} garbage rows", tmp_path)
    finally:
        path.unlink()


@pytest.fixture(scope="module", autouse=True)
def _write_figures():
    yield
    if FIGURES:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        out = ARTIFACTS / "malformed-cohorts.json"
        out.write_text(json.dumps(FIGURES, indent=2), encoding="utf-8")


# --- Training killed at several points --------------------------------------------------------

TRAIN_ARGS = ["-v", "train", "--data", "synthetic:200", "--folds", "2", "--n-bootstrap", "2"]
TRAIN_ARGS += ["--jobs", "1"]
REGISTERING = "writing the report and registering"
KILL_POINTS = [
    ("cross-validating", 0.0),
    ("fitting ensembles", 0.0),
    ("analysing the cohort", 0.0),
    *((REGISTERING, delay) for delay in (0.0, 0.5, 1.0, 1.5, 2.0, 2.5)),
]
"""Where `netprog train` is killed: when a step is announced, then in the registration step
(report, model card, the staged model and its rename into the store) after each delay; the
last delays may let a job finish, which must then have registered a whole model."""


def _train_env(home: Path, temporary: Path) -> dict[str, str]:
    return {
        **os.environ,
        "BENTOML_HOME": str(home),
        "BENTOML_DO_NOT_TRACK": "true",
        "PYTHONUNBUFFERED": "1",
        "TMPDIR": str(temporary),
    }


def _kill_training(env: dict[str, str], line: str, delay: float) -> bool:
    """Start `netprog train`, SIGKILL it `delay` s after it logs `line`; False if it finished."""
    process = subprocess.Popen(
        [str(NETPROG), *TRAIN_ARGS], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + CLI_SECONDS
    seen: list[bytes] = []
    while time.monotonic() < deadline and (output := process.stderr.readline()):
        seen.append(output)
        if line.encode() in output:
            break
    else:
        process.kill()
        process.wait()
        pytest.fail(f"netprog train never logged {line!r}:\n{b''.join(seen).decode()}")
    time.sleep(delay)
    process.kill()
    code = process.wait(timeout=30)
    process.stderr.close()
    return code == -9


def _models(home: Path) -> dict[str, str]:
    from tests.training.store import tree_digest

    return tree_digest(home / "models")


def _is_whole(folder: Path) -> bool:
    """Every artifact of a stored model matches the checksum recorded at training."""
    import yaml

    recorded = yaml.safe_load((folder / "model.yaml").read_text())["metadata"]["artifact_sha256"]
    return all(registry.sha256_of(folder / name) == digest for name, digest in recorded.items())


@pytest.mark.slow
def test_netprog_train_killed_at_any_step_leaves_the_store_as_it_was_or_with_one_whole_model(
    tmp_path,
):
    home, temporary = tmp_path / "home", tmp_path / "tmp"
    temporary.mkdir()
    env = _train_env(home, temporary)
    first = subprocess.run([str(NETPROG), *TRAIN_ARGS], env=env, capture_output=True, check=False)
    assert first.returncode == 0, first.stderr.decode()
    pointer = (home / registry.POINTER_FILE).read_bytes()
    outcomes = []
    for line, delay in KILL_POINTS:
        before = _models(home)
        killed = _kill_training(env, line, delay)
        after = _models(home)
        added = {Path(name).parts[1] for name in after.keys() - before.keys()}
        changed = {name for name in before if after.get(name) != before[name]}
        outcomes.append((line, delay, killed, sorted(added)))
        assert (home / registry.POINTER_FILE).read_bytes() == pointer, (line, delay)
        assert len(added) <= 1, (line, delay)
        assert changed <= {f"{registry.MODEL_NAME}/latest"}, (line, delay)
        for version in added:
            assert _is_whole(home / "models" / registry.MODEL_NAME / version), (line, delay)
        if not added:
            assert not changed, (line, delay)
    last = subprocess.run([str(NETPROG), *TRAIN_ARGS], env=env, capture_output=True, check=False)
    staging = home / registry.STAGING_DIR
    leftovers = sorted(p.name for p in temporary.iterdir()) + (
        sorted(p.name for p in staging.iterdir()) if staging.exists() else []
    )
    print("\nkilled netprog train at:", *(f"\n  {o}" for o in outcomes), "\nleftovers:", leftovers)
    assert last.returncode == 0, last.stderr.decode()
    assert all(killed for line, _, killed, _ in outcomes if line != REGISTERING)
    assert leftovers == []

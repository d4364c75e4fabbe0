"""Where joblib's parallel work runs: local processes, or a Dask cluster for the same tasks."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import joblib

from training.exceptions import ParallelBackendError

__all__ = ["CONNECT_TIMEOUT_S", "joblib_backend"]

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 30


@contextmanager
def joblib_backend(dask_scheduler: str | None = None, n_jobs: int = 1) -> Iterator[int]:
    """Run the joblib work inside the block locally or on the Dask cluster at `dask_scheduler`.

    Yields the `n_jobs` to hand to joblib: the given one locally, -1 (every worker thread of
    the cluster) on Dask. Each task is seeded explicitly, so a task computes the same result
    wherever it runs, and the results are gathered in submission order: the same seed gives
    the same models and metrics locally and on a cluster.

    Raises
    ------
    ParallelBackendError
        When `distributed` is not installed or the scheduler does not answer in time.
    """
    if dask_scheduler is None:
        yield n_jobs
        return
    try:
        from distributed import Client
    except ImportError:
        raise ParallelBackendError(
            "--dask-scheduler needs the `distributed` package, but it is not installed; "
            "install it with `pip install 'dask[distributed]'` or drop --dask-scheduler"
        ) from None
    try:
        client = Client(dask_scheduler, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
    except (OSError, TimeoutError) as error:
        raise ParallelBackendError(
            f"the Dask scheduler at {dask_scheduler} must answer within {CONNECT_TIMEOUT_S} s, "
            f"but it did not ({type(error).__name__}); start it or check the address"
        ) from None
    with client, joblib.parallel_config(backend="dask", client=client):
        logger.info("running on the Dask cluster at %s", dask_scheduler)
        yield -1

"""Run the prediction units on a dask ``distributed`` cluster.

The same unit function as the local pipeline (:meth:`UnitRunner.run_unit`: read unit ⊕ halo,
predict, write in one assignment, write the marker) becomes one task per unit.  The predictor
and the runner are scattered to every worker once (``broadcast=True``), so each worker keeps
one deserialised model and its open zarr arrays for all of its tasks.  Tasks are submitted a
few at a time (bounded in flight), so a million-unit store never builds a million-task graph.
Any ``distributed.Client`` works (a ``dask_jobqueue`` SLURM cluster, a scheduler address);
without one a ``LocalCluster`` is started for the call.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from denoise.predict.runner import prepare_run, progress_bar, summarize
from denoise.settings import PredictConfig

log = logging.getLogger(__name__)

#: zarr async concurrency per task on a worker (total ≈ worker threads × this).
WORKER_ZARR_CONCURRENCY = 2


def _init_worker(torch_threads: int, zarr_concurrency: int) -> None:
    """Per-worker settings: zarr concurrency and torch intra-op threads."""
    import zarr

    zarr.config.set({"async.concurrency": zarr_concurrency})
    if "torch" in sys.modules:
        import torch

        torch.set_num_threads(torch_threads)


def _run_unit(runner: Any, predictor: Any, uid: int) -> int:
    """Task body: one unit, with the worker's cached runner and predictor."""
    return runner.run_unit(predictor, uid)


def predict_distributed(
    input_store: str | Path,
    outputs: Mapping[str, str | Path],
    predictor: Any,
    cfg: PredictConfig,
    fingerprint: str,
    *,
    client: Any | None = None,
    scatter_index: int = 0,
    scatter_count: int = 1,
    n_workers: int | None = None,
    threads_per_worker: int = 1,
    max_in_flight: int | None = None,
) -> dict[str, Any]:
    """:func:`denoise.predict.runner.predict_units` with one dask task per unit.

    Parameters
    ----------
    input_store, outputs, predictor, cfg, fingerprint, scatter_index, scatter_count
        As for ``predict_units`` (markers, resume and scatter behave identically).
    client
        A ``distributed.Client``; ``None`` starts a ``LocalCluster`` of ``n_workers`` processes
        (default: CPU count) with ``threads_per_worker`` threads each, closed afterwards.
    max_in_flight
        Tasks submitted ahead of completion (default 2 × the cluster's threads).

    Returns
    -------
    dict
        Same keys as ``predict_units``.
    """
    from distributed import Client, LocalCluster, as_completed

    t0 = time.perf_counter()
    runner, owned, todo, skipped = prepare_run(
        input_store, outputs, predictor, cfg, fingerprint, scatter_index, scatter_count
    )
    own_cluster = client is None
    cluster = None
    if own_cluster:
        cluster = LocalCluster(
            n_workers=n_workers or os.cpu_count() or 1, threads_per_worker=threads_per_worker,
            processes=True, dashboard_address=None,
        )
        client = Client(cluster)
    try:
        nthreads = sum(client.nthreads().values())
        threads_each = max(1, nthreads // max(1, len(client.nthreads())))
        client.run(_init_worker, threads_each, WORKER_ZARR_CONCURRENCY)
        log.info(
            "distributed job %d/%d: %d units to compute on %d worker thread(s), %d already done",
            scatter_index, scatter_count, len(todo), nthreads, len(skipped),
        )
        runner_f = client.scatter(runner, broadcast=True, hash=False)
        predictor_f = client.scatter(predictor, broadcast=True, hash=False)
        limit = max_in_flight or 2 * nthreads
        pending = iter(todo)
        futures = as_completed()
        for uid in pending:
            futures.add(client.submit(_run_unit, runner_f, predictor_f, uid, pure=False))
            if futures.count() >= limit:
                break
        with progress_bar(len(todo), f"predict {scatter_index}/{scatter_count} (dask)") as bar:
            for fut in futures:
                fut.result()
                bar.update(1)
                nxt = next(pending, None)
                if nxt is not None:
                    futures.add(client.submit(_run_unit, runner_f, predictor_f, nxt, pure=False))
    finally:
        if own_cluster:
            client.close()
            if cluster is not None:
                cluster.close()
    seconds = {"total": time.perf_counter() - t0}
    return summarize(runner, owned, todo, skipped, scatter_index, scatter_count, seconds)

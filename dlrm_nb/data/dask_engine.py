"""A Dask client for preprocessing: a LocalCluster by default, or an existing scheduler."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from dlrm_nb.exceptions import DlrmNbError


@contextmanager
def dask_client(scheduler: str | None, workers: int) -> Iterator:
    """Yield a ``dask.distributed.Client``.

    With ``scheduler`` (e.g. ``tcp://10.0.0.5:8786``) it connects to that cluster, whose
    workers must see the raw and output folders at the same paths; otherwise it starts a
    ``LocalCluster`` of ``workers`` single-threaded worker processes, closed on exit.
    """
    from dask.distributed import Client, LocalCluster

    if scheduler:
        try:
            client = Client(scheduler, timeout="30s")
        except OSError as exc:
            raise DlrmNbError(f"cannot reach the Dask scheduler at {scheduler!r} ({exc})") from exc
        try:
            yield client
        finally:
            client.close()
        return
    with (
        LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None, memory_limit=0
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client

"""The system under test (SUT): batches samples, predicts, answers LoadGen.

SingleStream and MultiStream predict in LoadGen's own thread (no hand-off). Offline and Server
hand queries to ``instances`` worker threads that share one waiting list; each worker sets its
own torch intra-op threads (and, with several instances, pins itself to its own cores), warms
the predictor's shapes in its thread, then serves:

- Offline: the one query is cut into fixed batches of ``max_pairs`` pairs; each free worker takes
  the next batch.
- Server: a free worker asks a :class:`~dlrm_nb.loadgen.batcher.DeadlineBatcher` which waiting
  queries to run now (at most ``max_pairs`` pairs, each on time for a budget of
  ``budget_fraction`` of ``latency_ms``), with a forward-time model calibrated at start and learnt
  from every batch.

A worker with nothing to do polls for ``spin_ms`` before it blocks, so it, its caches and its
OpenMP team are still awake when the next query comes soon after (DESIGN §7, "Hot workers").
Responses are float32 ``[p, y]`` per pair, kept alive until ``QuerySamplesComplete`` has copied
them. An exception in a worker fails the run (LoadGen still gets an answer for every sample).
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

from dlrm_nb.data.criteo import N_CAT, N_DENSE
from dlrm_nb.exceptions import DlrmNbError
from dlrm_nb.loadgen.batcher import DeadlineBatcher, ServiceModel
from dlrm_nb.loadgen.qsl import AggregatedQSL, run_starts
from dlrm_nb.loadgen.settings import STREAM_SAMPLES, auto_threads
from dlrm_nb.model.inference import Predictor

#: Server: the share of the latency bound each sample is planned to complete within; the rest is
#: margin for what the forward-time model does not foresee (a noisy machine, LoadGen's own time).
SERVER_BUDGET_FRACTION = 0.8

#: How long an idle worker polls for work before it blocks (DESIGN §7: a forward 4 ms back to
#: back took 10 ms after 30 ms idle); polling wakes it every ``POLL_S`` without holding the GIL.
SPIN_MS = 3.0
POLL_S = 100e-6


@dataclass
class _Work:
    ids: np.ndarray  # LoadGen response ids, uint64 [S]
    samples: np.ndarray  # QSL indices, int64 [S]
    issued_ns: np.ndarray  # perf_counter_ns when LoadGen handed each sample to the SUT, int64 [S]
    pairs: int = 0  # pairs in all S samples


@dataclass
class SutStats:
    """What the SUT did: its layout, forwards, pairs, time in the model, and how batches closed."""

    forwards: int = 0
    pairs: int = 0
    samples: int = 0
    model_seconds: float = 0.0
    batch_pairs: list[int] = field(default_factory=list)
    latencies_ns: list[np.ndarray] = field(default_factory=list)  # per sample: issue -> complete
    instances: int = 1  # worker threads (1 in the streaming scenarios: LoadGen's own)
    threads_per_instance: int = 1  # torch intra-op threads of each
    pinned: bool = False  # whether each instance was pinned to its own cores
    closed: Counter[str] = field(default_factory=Counter)  # Server batches by why they closed

    def sample_latencies_ns(self) -> np.ndarray:
        """int64 [S]: for every completed sample, ns from the SUT receiving it to its completion."""
        return np.concatenate(self.latencies_ns) if self.latencies_ns else np.zeros(0, np.int64)


class DlrmSUT:
    """The system under test: batches samples, predicts, answers LoadGen.

    ``instances`` worker threads (Offline and Server) of ``threads_per_instance`` intra-op threads
    each (None: :func:`~dlrm_nb.loadgen.settings.auto_threads` for the cores this process may use).
    Server plans each sample to complete within ``budget_fraction * latency_ms``; ``idle_ms``: how
    long the batcher waits for more after the last arrival (0: start at once; see
    :mod:`dlrm_nb.loadgen.batcher`). ``pin``: pin each instance to its own cores (default: when
    there are several). The constructor returns once every worker has warmed up; it raises
    what a worker raised while doing so.
    """

    def __init__(
        self,
        predictor: Predictor,
        qsl: AggregatedQSL,
        scenario: str,
        max_pairs: int,
        *,
        latency_ms: float = 30.0,
        instances: int = 1,
        threads_per_instance: int | None = None,
        spin_ms: float = SPIN_MS,
        budget_fraction: float = SERVER_BUDGET_FRACTION,
        idle_ms: float = 0.0,
        pin: bool | None = None,
    ) -> None:
        import mlperf_loadgen as lg

        if instances < 1 or (threads_per_instance is not None and threads_per_instance < 1):
            raise DlrmNbError(
                f"instances {instances} and threads_per_instance {threads_per_instance} must be >= 1"
            )
        self.lg, self.predictor, self.qsl, self.scenario, self.max_pairs = (
            lg,
            predictor,
            qsl,
            scenario,
            max_pairs,
        )
        self.error: BaseException | None = None
        cores = allowed_cores()
        streams = scenario in STREAM_SAMPLES
        instances = 1 if streams else instances
        threads = threads_per_instance or auto_threads(len(cores), instances, scenario)
        if pin is None:
            pin = instances > 1
        spare = len(cores) - instances * threads  # left to LoadGen's threads, first in the mask
        layout = _core_sets(cores, instances, threads, spare) if pin else None
        self.stats = SutStats(instances=instances, threads_per_instance=threads)
        self._spin_s = spin_ms / 1000
        self._main_threads = torch.get_num_threads()
        self._stream_threads = threads_per_instance  # streams: applied in LoadGen's thread, if given
        self._cond = threading.Condition()
        self._waiting: deque[_Work] = deque()
        self._arrivals: deque[float] = deque()  # Server: seconds (perf_counter) of each waiting query
        self._pairs: deque[int] = deque()
        self._flushed = self._closing = False
        self._stats_lock = threading.Lock()
        self._workers: list[threading.Thread] = []
        # per worker: its measured (fixed s, s a pair) of a forward (Server), or what it raised
        self._calibration: list[tuple[float, float] | BaseException | None] = [None] * instances
        self._pinned = [False] * instances
        self.batcher: DeadlineBatcher | None = None
        if not streams:
            ready = threading.Barrier(instances + 1)
            for index in range(instances):
                cores_of = layout[index] if layout is not None else None
                worker = threading.Thread(
                    target=self._worker,
                    args=(index, threads, cores_of, ready),
                    name=f"dlrm-nb-sut-{index}",
                    daemon=True,
                )
                worker.start()
                self._workers.append(worker)
            ready.wait()
            self.stats.pinned = all(self._pinned)
            failed = [c for c in self._calibration if isinstance(c, BaseException)]
            if failed:
                self._stop_workers()
                raise failed[0]
            if scenario == "Server":
                measured = [c for c in self._calibration if isinstance(c, tuple)]
                fixed, per_pair = (float(np.median(v)) for v in zip(*measured, strict=True))
                model = ServiceModel(max(fixed, 1e-5), max(per_pair, 0.0), ref_pairs=max_pairs)
                self.batcher = DeadlineBatcher(
                    model,
                    max_pairs=max_pairs,
                    budget=budget_fraction * latency_ms / 1000,
                    idle=idle_ms / 1000,
                )
        self.handle = lg.ConstructSUT(self._issue, self._flush)

    # -- LoadGen callbacks

    def _issue(self, query_samples) -> None:
        now = time.perf_counter_ns()
        ids = np.fromiter((q.id for q in query_samples), dtype=np.uint64, count=len(query_samples))
        samples = np.fromiter((q.index for q in query_samples), dtype=np.int64, count=len(query_samples))
        work = _Work(ids, samples, np.full(len(ids), now, dtype=np.int64), int(self.qsl.sizes[samples].sum()))
        if not self._workers:  # SingleStream / MultiStream: no hand-off
            if self._stream_threads is not None and torch.get_num_threads() != self._stream_threads:
                torch.set_num_threads(self._stream_threads)
            self._run(work)
        elif self.batcher is None:  # Offline: fixed batches, any free worker takes the next
            batches = list(_batches(work, self.qsl.sizes, self.max_pairs))
            with self._cond:
                self._waiting.extend(batches)
                self._cond.notify_all()
        else:
            with self._cond:
                self._waiting.append(work)
                self._arrivals.append(now / 1e9)
                self._pairs.append(work.pairs)
                self._cond.notify()

    def _flush(self) -> None:
        with self._cond:  # LoadGen has issued everything: nothing is worth waiting for
            self._flushed = True
            self._cond.notify_all()

    # -- workers

    def _worker(self, index: int, threads: int, cores: list[int] | None, ready: threading.Barrier) -> None:
        try:
            if cores is not None:
                self._pinned[index] = _pin_this_thread(cores)
            torch.set_num_threads(threads)  # this thread's OpenMP team
            self.predictor.warm_up()  # shapes built for this thread count (oneDNN keys on it)
            if self.scenario == "Server":
                self._calibration[index] = self._calibrate()
        except BaseException as exc:
            self._calibration[index] = exc
            ready.wait()
            return
        ready.wait()
        while True:
            try:
                taken = self._take()
            except BaseException as exc:  # a bug here must fail the run, not leave LoadGen waiting
                self.error = self.error or exc
                self.batcher = None  # from now on: FIFO, one query at a time, answered empty
                continue
            if taken is None:
                return
            work, reason = taken
            started = time.perf_counter()
            self._run(work)
            elapsed = time.perf_counter() - started
            batcher = self.batcher
            if batcher is not None:
                with self._cond:
                    batcher.model.observe(work.pairs, elapsed)
                    self.stats.closed[reason or "size"] += 1

    def _calibrate(self) -> tuple[float, float]:
        """(fixed s, s per pair) of a forward in this thread: the median of 3 at two sizes (up
        to 1024 pairs: Server's batches are mostly smaller, and the model learns from them)."""
        sizes = sorted({min(128, self.max_pairs), min(1024, self.max_pairs)})
        times = []
        for size in sizes:
            dense, ids = torch.zeros(size, N_DENSE), torch.zeros(size, N_CAT, dtype=torch.int64)
            runs = []
            for _ in range(3):
                started = time.perf_counter()
                self.predictor.predict(dense, ids).cpu()
                runs.append(time.perf_counter() - started)
            times.append(float(np.median(runs)))
        if len(sizes) == 1:
            return 0.0, times[0] / sizes[0]
        per_pair = max(0.0, (times[1] - times[0]) / (sizes[1] - sizes[0]))
        return max(0.0, times[0] - per_pair * sizes[0]), per_pair

    def _take(self) -> tuple[_Work, str | None] | None:
        """The next batch for this worker, and why it closed (Server); None once closed. Waits,
        polling for ``spin_ms`` and then blocking, while there is nothing to run."""
        spin_until = time.perf_counter() + self._spin_s
        with self._cond:
            while True:
                timeout: float | None = None
                if self._waiting:
                    if self.batcher is None:
                        return self._waiting.popleft(), None
                    now = time.perf_counter()
                    decision = self.batcher.decide(
                        self._arrivals, self._pairs, now, flush=self._flushed or self._closing
                    )
                    if decision.take:
                        return self._pop(decision.take), decision.reason
                    if decision.wait_until is not None:
                        timeout = decision.wait_until - now
                elif self._closing:
                    return None
                if (left := spin_until - time.perf_counter()) > 0:
                    timeout = min(timeout if timeout is not None else left, left, POLL_S)
                self._cond.wait(timeout)

    def _pop(self, count: int) -> _Work:
        works = [self._waiting.popleft() for _ in range(count)]
        for _ in range(count):
            self._arrivals.popleft()
            self._pairs.popleft()
        if count == 1:
            return works[0]
        return _Work(
            np.concatenate([w.ids for w in works]),
            np.concatenate([w.samples for w in works]),
            np.concatenate([w.issued_ns for w in works]),
            sum(w.pairs for w in works),
        )

    def _run(self, work: _Work) -> None:
        for batch in _batches(work, self.qsl.sizes, self.max_pairs):
            ids, samples = batch.ids, batch.samples
            if self.error is not None:
                self._complete_empty(ids)
                continue
            try:
                self._predict_and_complete(ids, samples, batch.issued_ns)
            except BaseException as exc:  # the run must fail, loudly, but LoadGen must be able to finish
                self.error = exc
                self._complete_empty(ids)

    def _predict_and_complete(self, ids: np.ndarray, samples: np.ndarray, issued_ns: np.ndarray) -> None:
        started = time.perf_counter()
        dense, cats, labels = self.qsl.gather(samples)
        predictions = self.predictor.predict(dense, cats).cpu()
        model_seconds = time.perf_counter() - started
        response = torch.stack([predictions, labels.to(predictions.dtype)], dim=1).numpy()  # [P, 2] float32
        sizes = self.qsl.sizes[samples]
        offsets = run_starts(sizes) * 8  # bytes: 2 float32 per pair
        base = response.ctypes.data
        responses = [
            self.lg.QuerySampleResponse(int(i), base + int(o), int(n) * 8)
            for i, o, n in zip(ids, offsets, sizes, strict=True)
        ]
        self.lg.QuerySamplesComplete(responses)  # copies the data: `response` may go after this
        latencies = time.perf_counter_ns() - issued_ns
        pairs = int(sizes.sum())
        with self._stats_lock:
            self.stats.model_seconds += model_seconds
            self.stats.latencies_ns.append(latencies)
            self.stats.forwards += 1
            self.stats.pairs += pairs
            self.stats.samples += len(samples)
            self.stats.batch_pairs.append(pairs)

    def _complete_empty(self, ids: np.ndarray) -> None:
        self.lg.QuerySamplesComplete([self.lg.QuerySampleResponse(int(i), 0, 0) for i in ids])

    def _stop_workers(self) -> None:
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        for worker in self._workers:
            worker.join()
        torch.set_num_threads(self._main_threads)  # the workers' set_num_threads is process-wide too

    def close(self) -> None:
        self._stop_workers()
        self.lg.DestroySUT(self.handle)


def allowed_cores() -> list[int]:
    """The cores this process may run on (its affinity mask, which containers and taskset narrow)."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def _pin_this_thread(cores: list[int]) -> bool:
    """Pin the calling thread to ``cores`` (Linux: ``sched_setaffinity(0)`` is this thread only,
    and the OpenMP team it makes later inherits it); False where the OS does not allow it."""
    try:
        os.sched_setaffinity(0, cores)
    except (AttributeError, OSError):
        return False
    return True


def _core_sets(cores: list[int], instances: int, threads: int, spare: int) -> list[list[int]] | None:
    """Each instance's own ``threads`` cores, after the first ``spare`` (left to LoadGen's
    threads); None when there are not enough cores to give each its own."""
    spare = max(0, spare)
    if spare + instances * threads > len(cores):
        return None
    return [cores[spare + i * threads : spare + (i + 1) * threads] for i in range(instances)]


def _batches(work: _Work, sizes: np.ndarray, max_pairs: int) -> Iterator[_Work]:
    """Split a query's samples into consecutive batches of at most ``max_pairs`` pairs (>= 1 sample each)."""
    pairs = np.cumsum(sizes[work.samples])
    start = 0
    while start < len(work.samples):
        limit = (pairs[start - 1] if start else 0) + max_pairs
        end = max(start + 1, int(np.searchsorted(pairs, limit, side="right")))
        batch_pairs = int(pairs[end - 1] - (pairs[start - 1] if start else 0))
        yield _Work(work.ids[start:end], work.samples[start:end], work.issued_ns[start:end], batch_pairs)
        start = end

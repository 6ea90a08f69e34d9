"""The system under test (SUT): batches samples across queries, predicts, answers LoadGen.

The SUT batches samples up to ``max_pairs`` pairs per forward. SingleStream and MultiStream
predict in LoadGen's own thread (no hand-off); Offline and Server hand queries to one worker
thread through a ``queue.Queue``; Server takes whatever is waiting when the worker is free
(dynamic batching). Responses are float32 ``[p, y]`` per pair, kept alive until
``QuerySamplesComplete`` has copied them. An exception in the worker fails the run.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from dlrm_nb.loadgen.qsl import AggregatedQSL, run_starts
from dlrm_nb.model.inference import Predictor


@dataclass
class _Work:
    ids: np.ndarray  # LoadGen response ids, uint64 [S]
    samples: np.ndarray  # QSL indices, int64 [S]
    issued_ns: np.ndarray  # perf_counter_ns when LoadGen handed each sample to the SUT, int64 [S]


@dataclass
class SutStats:
    """What the SUT did: forwards, pairs, and time in the model."""

    forwards: int = 0
    pairs: int = 0
    samples: int = 0
    model_seconds: float = 0.0
    batch_pairs: list[int] = field(default_factory=list)
    latencies_ns: list[np.ndarray] = field(default_factory=list)  # per sample: issue -> complete

    def sample_latencies_ns(self) -> np.ndarray:
        """int64 [S]: for every completed sample, ns from the SUT receiving it to its completion."""
        return np.concatenate(self.latencies_ns) if self.latencies_ns else np.zeros(0, np.int64)


class DlrmSUT:
    """The system under test: batches samples, predicts, answers LoadGen."""

    def __init__(self, predictor: Predictor, qsl: AggregatedQSL, scenario: str, max_pairs: int) -> None:
        import mlperf_loadgen as lg

        self.lg, self.predictor, self.qsl, self.scenario, self.max_pairs = (
            lg,
            predictor,
            qsl,
            scenario,
            max_pairs,
        )
        self.stats = SutStats()
        self.error: BaseException | None = None
        self._queue: queue.Queue[_Work | None] = queue.Queue()
        self._worker: threading.Thread | None = None
        if scenario in ("Offline", "Server"):
            self._worker = threading.Thread(target=self._serve, name="dlrm-nb-sut", daemon=True)
            self._worker.start()
        self.handle = lg.ConstructSUT(self._issue, self._flush)

    # -- LoadGen callbacks

    def _issue(self, query_samples) -> None:
        now = time.perf_counter_ns()
        ids = np.fromiter((q.id for q in query_samples), dtype=np.uint64, count=len(query_samples))
        samples = np.fromiter((q.index for q in query_samples), dtype=np.int64, count=len(query_samples))
        work = _Work(ids, samples, np.full(len(ids), now, dtype=np.int64))
        if self._worker is None:
            self._run(work)  # SingleStream / MultiStream: no hand-off
        else:
            self._queue.put(work)

    def _flush(self) -> None:
        pass

    # -- work

    def _serve(self) -> None:
        while True:
            work = self._queue.get()
            if work is None:
                return
            waiting = [work]
            pairs = int(self.qsl.sizes[work.samples].sum())
            while pairs < self.max_pairs:  # take whatever else has arrived (Server: dynamic batching)
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._queue.put(None)
                    break
                waiting.append(more)
                pairs += int(self.qsl.sizes[more.samples].sum())
            self._run(
                _Work(
                    np.concatenate([w.ids for w in waiting]),
                    np.concatenate([w.samples for w in waiting]),
                    np.concatenate([w.issued_ns for w in waiting]),
                )
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
        self.stats.model_seconds += time.perf_counter() - started
        response = torch.stack([predictions, labels.to(predictions.dtype)], dim=1).numpy()  # [P, 2] float32
        sizes = self.qsl.sizes[samples]
        offsets = run_starts(sizes) * 8  # bytes: 2 float32 per pair
        base = response.ctypes.data
        responses = [
            self.lg.QuerySampleResponse(int(i), base + int(o), int(n) * 8)
            for i, o, n in zip(ids, offsets, sizes, strict=True)
        ]
        self.lg.QuerySamplesComplete(responses)  # copies the data: `response` may go after this
        self.stats.latencies_ns.append(time.perf_counter_ns() - issued_ns)
        self.stats.forwards += 1
        self.stats.pairs += int(sizes.sum())
        self.stats.samples += len(samples)
        self.stats.batch_pairs.append(int(sizes.sum()))

    def _complete_empty(self, ids: np.ndarray) -> None:
        self.lg.QuerySamplesComplete([self.lg.QuerySampleResponse(int(i), 0, 0) for i in ids])

    def close(self) -> None:
        if self._worker is not None:
            self._queue.put(None)
            self._worker.join()
        self.lg.DestroySUT(self.handle)


def _batches(work: _Work, sizes: np.ndarray, max_pairs: int):
    """Split a query's samples into consecutive batches of at most ``max_pairs`` pairs (>= 1 sample each)."""
    pairs = np.cumsum(sizes[work.samples])
    start = 0
    while start < len(work.samples):
        limit = (pairs[start - 1] if start else 0) + max_pairs
        end = max(start + 1, int(np.searchsorted(pairs, limit, side="right")))
        yield _Work(work.ids[start:end], work.samples[start:end], work.issued_ns[start:end])
        start = end

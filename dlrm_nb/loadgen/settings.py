"""LoadGen settings: scenarios, modes, MLPerf's counts, and the ``user.conf`` of a run."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from types import MappingProxyType

from dlrm_nb.exceptions import DlrmNbError, InvalidValueError

SCENARIOS = ("SingleStream", "MultiStream", "Server", "Offline")


MODES = {"performance": "PerformanceOnly", "accuracy": "AccuracyOnly"}


MLPERF_PERFORMANCE_SAMPLES = 204_800


MODEL_NAME = "dlrm"


#: LoadGen's early-stopping rule needs about 460 queries, all within the bound, before a p99 can be
#: VALID; a Server run shorter than that is INVALID whatever its latencies.
EARLY_STOPPING_QUERIES = 500


#: The fewest queries with which early stopping can report each scenario's percentile (p90 for
#: SingleStream, p99 otherwise); short runs are stretched to them, within max_duration_ms
#: (Server runs are given the time they need).
EARLY_STOPPING_MIN_QUERIES = MappingProxyType(
    {"SingleStream": 64, "MultiStream": 662, "Server": EARLY_STOPPING_QUERIES}
)


#: The Server QPS search's defaults: its whole time, and the length of each probe.
QPS_SEARCH_BUDGET_S = 120.0
QPS_SEARCH_PROBE_MS = 5000

#: Samples per query of the streaming scenarios (LoadGen's defaults for MultiStream).
STREAM_SAMPLES = MappingProxyType({"SingleStream": 1, "MultiStream": 8})


#: From this many cores on, a run may split them into several instances (see auto_instances).
MANY_CORES = 8

#: Intra-op threads of one instance on a many-core machine.
THREADS_PER_INSTANCE = 4


def usable_cores() -> int:
    """Cores this process may run on (its affinity mask, which containers and taskset narrow)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def auto_instances(cores: int) -> int:
    """How many SUT worker instances to run on ``cores`` cores: 1 below ``MANY_CORES`` (8), else
    ``cores // 4`` (instances of about 4 intra-op threads each).

    Why: a DLRM forward at Server's batch sizes (a few hundred to a few thousand pairs) keeps few
    threads busy; more and narrower instances run more forwards at once, each with fewer OpenMP
    barriers and a smaller working set (Intel's MLPerf layout goes down to one thread per
    instance). Each instance is a Python thread, though, and the GIL serialises the Python part
    of their work (gathering inputs, building responses), so this stops at about 4 threads an
    instance rather than 1. Below 8 cores one instance: two on 2 cores would leave nothing for
    LoadGen's issue thread. Only the 2-core layout is measured (DESIGN §7); the rest is reasoned.
    """
    if cores < 1:
        raise InvalidValueError("cores", cores, "need a whole number >= 1")
    return 1 if cores < MANY_CORES else cores // THREADS_PER_INSTANCE


def requested_instances(instances: int) -> int:
    """``instances`` as users give it: 0 means :func:`auto_instances` of this machine's cores."""
    return instances or auto_instances(usable_cores())


def auto_threads(cores: int, instances: int, scenario: str) -> int:
    """Intra-op threads of each of ``instances`` instances on ``cores`` cores in ``scenario``.

    The cores are shared evenly. Server on a small machine (fewer than ``MANY_CORES``) first
    leaves LoadGen's issue thread a core: on 2 cores that is 1 thread, and the measurement in
    DESIGN §7 found Server VALID with 1 intra-op thread and INVALID with 2 (p99 26.5 vs 31.8 ms,
    compiled bf16). Offline (its issue thread idles after the one query), SingleStream and
    MultiStream (which predict in LoadGen's thread) use every core: on 2 cores, 2 threads. On many
    cores one core is a small share and the issue thread takes it as it needs it.
    """
    if cores < 1 or instances < 1:
        raise InvalidValueError("cores and instances", (cores, instances), "need whole numbers >= 1")
    spare = 1 if scenario == "Server" and 1 < cores < MANY_CORES else 0
    return max(1, (cores - spare) // instances)


def check_latency_ms(latency_ms: float) -> float:
    """``latency_ms`` when it can bound Server's p99 (MLPerf: 30 ms for DLRM v1)."""
    if not latency_ms > 0:
        raise InvalidValueError("latency_ms", latency_ms, "need a number > 0 (MLPerf: 30 ms for DLRM)")
    return latency_ms


def check_durations(min_duration_ms: int, max_duration_ms: int) -> None:
    """A run's bounds in ms: 0 <= min <= max and max > 0."""
    if min_duration_ms < 0:
        raise InvalidValueError("min_duration_ms", min_duration_ms, "need a whole number >= 0")
    if max_duration_ms < max(1, min_duration_ms):
        allowed = f"need a whole number >= {max(1, min_duration_ms)} (at least min_duration_ms, and > 0)"
        raise InvalidValueError("max_duration_ms", max_duration_ms, allowed)


@dataclass(frozen=True)
class LoadgenSettings:
    """What a LoadGen run does; turned into a ``user.conf`` for the run folder.

    Defaults keep a run bounded (at most ``max_duration_ms``, 60 s); ``official`` applies
    MLPerf's own durations and counts from LoadGen's built-in ``mlperf.conf`` instead.
    """

    scenario: str = "Offline"
    mode: str = "performance"
    target_qps: float | None = None  # Server: the arrival rate; Offline: the expected rate
    latency_ms: float = 30.0  # Server p99 bound (30 ms: DLRM v1 rules; 60 ms in today's mlperf.conf)
    # SingleStream / MultiStream: the latency LoadGen plans its queries with (None: measured at warm-up)
    expected_latency_ms: float | None = None
    min_duration_ms: int = 5_000
    max_duration_ms: int = 60_000
    min_query_count: int = 1  # raised to EARLY_STOPPING_MIN_QUERIES of the scenario
    max_query_count: int | None = None
    performance_sample_count: int | None = None  # default: MLPerf's 204,800 capped by the data
    max_pairs: int = 8192  # pairs per forward, batching across samples and queries
    official: bool = False
    # Offline / Server: SUT worker threads fed from one queue, each running its own forwards
    # (see auto_instances for a layout by core count); SingleStream / MultiStream predict in
    # LoadGen's thread and ignore it
    instances: int = 1
    threads_per_instance: int | None = None  # torch intra-op threads of each (None: auto_threads)

    def __post_init__(self) -> None:
        if self.scenario not in SCENARIOS:
            raise DlrmNbError(f"scenario {self.scenario!r} is not one of {', '.join(SCENARIOS)}")
        if self.mode not in MODES:
            raise DlrmNbError(f"mode {self.mode!r} is not one of {', '.join(MODES)}")
        if self.target_qps is not None and not self.target_qps > 0:
            raise DlrmNbError(f"target_qps {self.target_qps} must be > 0")
        check_latency_ms(self.latency_ms)
        if self.expected_latency_ms is not None and not self.expected_latency_ms > 0:
            raise DlrmNbError(
                f"expected_latency_ms {self.expected_latency_ms} must be > 0 (or None: measured)"
            )
        check_durations(self.min_duration_ms, self.max_duration_ms)
        if self.max_pairs < 1:
            raise DlrmNbError(f"max_pairs {self.max_pairs} must be >= 1")
        if self.instances < 1:
            raise InvalidValueError("instances", self.instances, "need a whole number >= 1")
        if self.threads_per_instance is not None and self.threads_per_instance < 1:
            raise InvalidValueError(
                "threads_per_instance", self.threads_per_instance, "need a whole number >= 1 (or None: auto)"
            )
        if self.scenario == "Server" and self.target_qps is None:
            raise DlrmNbError("scenario Server needs target_qps (queries per second to issue)")

    def thread_layout(self, cores: int) -> tuple[int, int]:
        """(instances, intra-op threads of each) on ``cores`` cores; the streaming scenarios run
        one instance, LoadGen's own thread."""
        instances = 1 if self.scenario in STREAM_SAMPLES else self.instances
        threads = self.threads_per_instance or auto_threads(cores, instances, self.scenario)
        return instances, threads

    def sample_count(self, total_samples: int) -> int:
        count = self.performance_sample_count or min(MLPERF_PERFORMANCE_SAMPLES, total_samples)
        if not 0 < count <= total_samples:
            raise DlrmNbError(
                f"performance_sample_count {count} is more than the {total_samples} aggregated samples "
                "the data holds"
            )
        return count

    def user_conf(self, total_samples: int) -> str:
        """The ``user.conf`` lines for model ``dlrm`` (LoadGen reads durations in ms)."""
        scenario = f"{MODEL_NAME}.{self.scenario}"
        lines = [f"{MODEL_NAME}.*.performance_sample_count_override = {self.sample_count(total_samples)}"]
        if self.target_qps is not None:
            lines.append(f"{scenario}.target_qps = {self.target_qps:g}")
        if self.scenario == "Server":
            lines.append(f"{scenario}.target_latency = {self.latency_ms:g}")
        if self.scenario in ("SingleStream", "MultiStream"):
            lines.append(f"{scenario}.target_latency = {self.expected_latency_ms:g}")
        if not self.official:
            queries = max(self.min_query_count, EARLY_STOPPING_MIN_QUERIES.get(self.scenario, 1))
            longest = self.max_duration_ms
            if self.scenario == "Server":  # leave time for the early-stopping queries at this rate
                assert self.target_qps is not None  # __post_init__: Server needs target_qps
                longest = max(longest, math.ceil(1500 * queries / self.target_qps))
            lines += [
                f"{scenario}.min_duration = {self.min_duration_ms}",
                f"{scenario}.max_duration = {longest}",
                f"{scenario}.min_query_count = {queries}",
            ]
            if self.max_query_count is not None:
                lines.append(f"{scenario}.max_query_count = {self.max_query_count}")
        return "\n".join(lines) + "\n"

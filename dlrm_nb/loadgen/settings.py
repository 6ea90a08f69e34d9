"""LoadGen settings: scenarios, modes, MLPerf's counts, and the ``user.conf`` of a run."""

from __future__ import annotations

import math
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
        if self.scenario == "Server" and self.target_qps is None:
            raise DlrmNbError("scenario Server needs target_qps (queries per second to issue)")

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

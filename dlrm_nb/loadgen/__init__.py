"""The LoadGen layer: aggregation, settings, QSL, SUT, runs, QPS search, MLPerf logs, accuracy."""

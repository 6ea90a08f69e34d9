"""DLRM inference workbook: Criteo preprocessing, DLRM model, MLPerf LoadGen harness and reports."""

__version__ = "0.1.0"

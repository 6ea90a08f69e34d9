"""The data layer: Criteo formats, raw text parsing, preprocessing, the reader, synthetic data."""

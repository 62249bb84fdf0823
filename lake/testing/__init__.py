"""Synthetic DICOM for tests and benchmarks (no real patient data)."""

"""Data layer: readers, the decode-once cache, fingerprints and patient-grouped splits."""

from xraybench.data.loading import Dataset, Splits, load_dataset, locate_data

__all__ = ["Dataset", "Splits", "load_dataset", "locate_data"]

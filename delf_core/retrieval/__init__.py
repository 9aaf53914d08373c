"""Retrieval evaluation: Revisited Oxford/Paris ground truth and datasets."""

from delf_core.revisited_dataset import RevisitedDataset, read_dataset_file

__all__ = ["RevisitedDataset", "read_dataset_file"]

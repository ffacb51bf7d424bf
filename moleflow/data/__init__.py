"""Datasets: MVTec AD, VisA and folder layouts, validation, and the generated default."""

from moleflow.data.check import check_dataset
from moleflow.data.layouts import CategoryData, Sample, list_categories, load_categories, load_category

__all__ = ["CategoryData", "Sample", "check_dataset", "list_categories", "load_categories", "load_category"]

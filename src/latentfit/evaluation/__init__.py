"""Evaluation: run (image, quality, method, steps) cells resumably, aggregate, compare by BD-rate."""

from .bdrate import bd_psnr, bd_rate
from .runner import Cell, EvalConfig, run_evaluation

__all__ = ["Cell", "EvalConfig", "bd_psnr", "bd_rate", "run_evaluation"]

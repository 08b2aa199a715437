"""Evaluation: metrics with uncertainty, paired comparisons, plots and Grad-CAM."""

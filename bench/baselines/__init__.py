"""Baselines each benchmark figure is compared with, measured in the same run."""

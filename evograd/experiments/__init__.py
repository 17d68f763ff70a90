"""Experiments from configs: typed config, one (method, seed) job, compare, report and plots."""

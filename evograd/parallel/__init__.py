"""Evaluation of populations: serial, local joblib workers or a Dask cluster, with per-evaluation
deadlines and job locks. joblib loads when a pool starts, Dask when a cluster is used."""

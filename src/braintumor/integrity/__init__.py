"""Data integrity: image fingerprints, near-duplicate search, verification, clusters,
leakage-free splits and the audit report. Pure functions; steps and the CLI wrap them."""

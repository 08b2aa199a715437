"""Data: reading sources (folders, zips, URLs), validation and quarantine, the manifest."""

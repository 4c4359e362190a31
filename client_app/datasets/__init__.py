"""Data intake at a site: reading CSV/Parquet sources, inspecting and validating them against a
study's data dictionary, cleaning under the operator's policy, and storing encrypted,
content-hashed dataset versions."""

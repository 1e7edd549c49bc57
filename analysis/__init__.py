"""analysis: the MESS+ paper's tables and figures from the Parquet that `sim sweep` writes."""

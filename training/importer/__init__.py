"""`nbc import`: bring your own history (CSV, Parquet, NDJSON; local or s3://) into the layout `nbc train` reads.

mapping.py reads the TOML column mapping, readers.py streams bounded batches, core.py validates every touchpoint
with the online schema and writes the folder (times.py parses timestamps), profiles.py gathers and validates the
profiles, declarations.py writes DIR/nbc.toml, quality.py counts what was kept and dropped (DIR/quality.json).
"""

from training.importer.core import ImportResult, Options, run
from training.importer.mapping import Mapping, MappingError, load

__all__ = ["ImportResult", "Mapping", "MappingError", "Options", "load", "run"]

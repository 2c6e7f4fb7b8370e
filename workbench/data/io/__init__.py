"""Event files: the public dataset's parquet layout (+ metadata JSON) and flat ROOT trees.

Readers stream in bounded memory and return validated :class:`workbench.Events`;
writers are atomic (temporary file in the same directory, then ``os.replace``).
Errors name the file, and the column when one is at fault.  See docs/io.md.
"""

from workbench.data.io.metadata import (
    DATASET_COLUMNS,
    DataFileError,
    DatasetMetadata,
    FileSchemaError,
    check_metadata,
    file_fingerprint,
    find_metadata,
    metadata_path_for,
    read_metadata,
    write_metadata,
)
from workbench.data.io.parquet import (
    ParquetEventWriter,
    dataset_schema,
    iter_parquet,
    parquet_row_groups,
    read_parquet,
    write_parquet,
)
from workbench.data.io.root import (
    RootEventWriter,
    iter_root,
    read_root,
    root_num_entries,
    write_root,
)

__all__ = [
    "DATASET_COLUMNS",
    "DataFileError",
    "DatasetMetadata",
    "FileSchemaError",
    "ParquetEventWriter",
    "RootEventWriter",
    "check_metadata",
    "dataset_schema",
    "file_fingerprint",
    "find_metadata",
    "iter_parquet",
    "iter_root",
    "metadata_path_for",
    "parquet_row_groups",
    "read_metadata",
    "read_parquet",
    "read_root",
    "root_num_entries",
    "write_metadata",
    "write_parquet",
    "write_root",
]

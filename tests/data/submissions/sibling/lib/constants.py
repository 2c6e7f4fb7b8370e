"""In a sub-folder: the organisers' ingestion puts sub-folders on sys.path too."""

HALF_WIDTH = 1.0

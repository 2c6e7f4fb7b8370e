"""Built-in event sources: the simulator, parquet and ROOT files."""

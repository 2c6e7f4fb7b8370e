"""Events and their sources: the schema, the awkward-array container, DER_ features, I/O."""

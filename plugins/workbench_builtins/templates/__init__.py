"""Built-in template strategies: pyhf histosys/normsys templates and polynomial responses."""

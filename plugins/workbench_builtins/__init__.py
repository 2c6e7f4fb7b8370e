"""Built-in strategies of the workbench, installed as ``workbench_builtins``.

Each module is a pluggy plugin registered through the ``workbench`` entry-point
group in pyproject.toml, exactly as a third-party package registers its own.
"""

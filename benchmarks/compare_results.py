"""Exit non-zero unless two results files are byte-identical (reproducibility check)."""

import hashlib
import sys
from pathlib import Path

a, b = (Path(p) for p in sys.argv[1:3])
da, db = (hashlib.sha256(p.read_bytes()).hexdigest() for p in (a, b))
print(f"{a}: {da}\n{b}: {db}")
if da != db:
    sys.exit(f"results differ: {a} vs {b}")
print("identical")

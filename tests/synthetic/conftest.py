import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"
if str(SRC) not in sys.path:  # until the package is installed editable
    sys.path.insert(0, str(SRC))

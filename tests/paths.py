"""Where the tests find the checkout and their data, from any folder under tests/."""
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]      # the checkout: python -m core and the scripts run from here
DATA = ROOT / "tests" / "data"
GOLDEN = DATA / "golden"

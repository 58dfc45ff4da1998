"""Which package of core/ imports which: the layers the architecture promises, read from the code.

    python tools/package_graph.py          # prints each package and the packages it imports, lowest first

Every import counts, also those inside functions. tests/test_architecture.py checks the graph against LAYERS.
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "core"
# lowest first: a package may import only packages before it (and itself)
LAYERS = ("files", "model", "latents", "context", "retrieval", "sampling", "families", "formats", "training", "app")


def package_of(path: Path) -> str:
    rel = path.relative_to(CORE).parts
    return rel[0] if len(rel) > 1 else ""


def imported_packages(path: Path) -> set[str]:
    """The core packages a module imports (relative imports resolved against its own package)."""
    here = path.relative_to(CORE).parent.parts
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = list(here[:len(here) - (node.level - 1)]) if node.level > 1 else list(here)
            parts = base + (node.module.split(".") if node.module else [])
            if not parts:          # "from . import x" at core/ itself
                parts = [a.name for a in node.names][:1]
            found.add(parts[0])
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("core."):
            found.add(node.module.split(".")[1])
    return found


def graph() -> dict[str, set[str]]:
    """package → the other packages its modules import."""
    out: dict[str, set[str]] = {}
    for path in CORE.rglob("*.py"):
        pkg = package_of(path)
        if pkg:
            out.setdefault(pkg, set()).update(p for p in imported_packages(path) if p != pkg and p in LAYERS)
    return out


def main() -> int:
    g = graph()
    for pkg in LAYERS:
        print(f"{pkg:10} → {', '.join(sorted(g.get(pkg, ()), key=LAYERS.index)) or '-'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

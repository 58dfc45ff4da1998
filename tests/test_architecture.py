"""core/ is layered: each package imports only the packages below it (tools/package_graph.py LAYERS), so the
package graph is acyclic and the folder tree reads as the data flow of one block."""
from package_graph import CORE, LAYERS, graph     # tools/ is on the path (pyproject.toml)


def test_every_core_module_lives_in_a_layer_package():
    top = sorted(p.name for p in CORE.glob("*.py"))
    assert top == ["__init__.py", "__main__.py"]
    assert sorted(p.name for p in CORE.iterdir() if p.is_dir() and p.name != "__pycache__") == sorted(LAYERS)


def test_a_package_imports_only_the_packages_below_it():
    wrong = {pkg: sorted(d for d in deps if LAYERS.index(d) > LAYERS.index(pkg)) for pkg, deps in graph().items()}
    assert not {k: v for k, v in wrong.items() if v}, f"imports of a higher layer: {wrong}"


def test_the_graph_sees_imports_inside_functions(tmp_path, monkeypatch):
    import package_graph
    fake = tmp_path / "core"
    (fake / "files").mkdir(parents=True)
    (fake / "files" / "x.py").write_text("def f():\n    from ..app import plan\n")
    monkeypatch.setattr(package_graph, "CORE", fake)
    assert package_graph.graph() == {"files": {"app"}}

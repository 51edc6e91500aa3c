"""The arrows of docs/architecture.md run one way: within reidlab/data no module reaches itself again through its
imports (those inside functions included), samples.py imports nothing of reidlab.data, and data imports nothing of
runs; models never import a trainer, clustering never imports a model."""
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "reidlab"


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every reidlab module ``path`` imports, anywhere in it (a function's lazy import too)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            out.add(target)
            out.update(f"{target}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return {m for m in out if m.startswith("reidlab")}


def graph(folder: str) -> dict[str, set[str]]:
    files = {module_name(p): p for p in (PACKAGE / folder).rglob("*.py")}
    return {m: {t for t in imports(p) if t in files and t != m} for m, p in files.items()}


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    found, state = [], {}

    def visit(m, path):
        state[m] = 1
        for t in sorted(g.get(m, ())):
            if state.get(t) == 1:
                found.append(path[path.index(t):] + [t] if t in path else [m, t])
            elif t not in state:
                visit(t, path + [t])
        state[m] = 2
    for m in sorted(g):
        if m not in state:
            visit(m, [m])
    return found


def test_the_data_package_has_no_import_circle():
    g = graph("data")
    for pkg in [m for m in g if (PACKAGE.parent / m.replace(".", "/") / "__init__.py").is_file()]:
        g.pop(pkg)                                   # a package's __init__ re-exports: not an arrow of its own
        for deps in g.values():
            deps.discard(pkg)
    assert cycles(g) == []
    assert g["reidlab.data.samples"] == set()
    for m, deps in g.items():
        assert not any(d.startswith("reidlab.runs") for d in imports(PACKAGE.parent / (m.replace(".", "/") + ".py"))), m


def test_models_never_import_a_trainer_and_clustering_never_a_model():
    for p in (PACKAGE / "models").rglob("*.py"):
        assert not {m for m in imports(p) if m.startswith(("reidlab.unsup", "reidlab.supervised", "reidlab.runs"))}, p
    for p in (PACKAGE / "clustering").rglob("*.py"):
        assert not {m for m in imports(p) if m.startswith("reidlab.models")}, p

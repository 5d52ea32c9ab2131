"""The package layout stays the pipeline's: imports run one way and never in a circle.

Layers, lowest first (``emogene_cli/__init__.py`` describes them)::

    ground floor   errors, interrupt, store, dataset, media, modelfiles, geometry, emotions
    models         models/ (torch modules only)
    parts          audio, face, evaluation, motion, render, emotion
    pipelines      pipelines/
    commands       commands/
    entry points   cli, __main__

A module may import from its own layer or a lower one, never a higher one. No module
imports itself back through others (no cycle, so no two modules import each other), the
parts import each other without a cycle, and code outside a part uses only the names its
``__init__`` exports (``__all__``), never its submodules. Every import counts, also one
inside a function or under ``TYPE_CHECKING``: each is a dependency.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "emogene_cli"
GROUND = {"errors", "interrupt", "store", "dataset", "media", "modelfiles", "geometry", "emotions"}
PARTS = ("audio", "face", "evaluation", "motion", "render", "emotion")
LAYERS = {"ground": 0, "models": 1, "parts": 2, "pipelines": 3, "commands": 4, "entry": 5}
MAX_LINES = 550  # "files a reader can hold in mind": split past ~500 lines


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def layer_of(module: str) -> tuple[str, str | None]:
    """``(layer, part)`` of a module such as ``emogene_cli.motion.training``."""
    parts = module.split(".")[1:]
    if not parts or parts[0] in GROUND:
        return "ground", None
    head = parts[0]
    if head == "models":
        return "models", None
    if head in PARTS:
        return "parts", head
    if head in ("pipelines", "commands"):
        return head, None
    if head in ("cli", "__main__"):
        return "entry", None
    raise AssertionError(f"{module}: not in any layer; add it to tests/test_layout.py's table")


class Graph:
    """Every intra-package import of a source tree.

    ``edges[module] = {imported module: [(line, names, module named in the statement)]}``;
    ``from pkg import submodule`` is an edge to the submodule, with no names, from ``pkg``.
    """

    def __init__(self, root: Path):
        self.root = root
        self.files = {module_name(root, p): p for p in sorted(root.rglob("*.py"))}
        self.edges: dict[str, dict[str, list[tuple[int, list[str], str]]]] = {}
        for module, path in self.files.items():
            self.edges[module] = self._imports(module, path)

    def _imports(self, module: str, path: Path) -> dict[str, list[tuple[int, list[str], str]]]:
        top = self.root.name
        is_package = path.name == "__init__.py"
        out: dict[str, list[tuple[int, list[str], str]]] = defaultdict(list)
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = module.split(".") if is_package else module.split(".")[:-1]
                    base = base[: len(base) - (node.level - 1)]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                if target != top and not target.startswith(top + "."):
                    continue
                names = [a.name for a in node.names]
                plain = [n for n in names if f"{target}.{n}" not in self.files]
                for n in names:
                    if f"{target}.{n}" in self.files:  # `from pkg import submodule`
                        out[f"{target}.{n}"].append((node.lineno, [], target))
                if plain:
                    out[target].append((node.lineno, plain, target))
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name == top or alias.name.startswith(top + "."):
                        out[alias.name].append((node.lineno, [], alias.name))
        return dict(out)

    def exported(self, package: str) -> set[str]:
        """The ``__all__`` of a package's ``__init__`` (empty if it has none)."""
        tree = ast.parse(self.files[package].read_text())
        for node in tree.body:
            if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
                return {ast.literal_eval(e) for e in node.value.elts}
        return set()


def upward_imports(graph: Graph) -> list[str]:
    """Imports from a lower layer into a higher one (a part into a pipeline, a model into a part...)."""
    bad = []
    for module, targets in graph.edges.items():
        mine = LAYERS[layer_of(module)[0]]
        for target, uses in targets.items():
            if target == graph.root.name:
                continue  # the root package holds only __version__
            theirs = LAYERS[layer_of(target)[0]]
            if theirs > mine:
                bad.append(f"{module} (line {uses[0][0]}) imports {target}, a higher layer")
    return bad


def cycles(graph: Graph) -> list[list[str]]:
    """Strongly connected components of more than one module, or a module that imports itself (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.edges.get(v, {}):
            if w not in graph.files:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph.edges.get(v, {}):
                found.append(sorted(component))

    for v in graph.files:
        if v not in index:
            visit(v)
    return found


def part_graph(graph: Graph) -> dict[str, set[str]]:
    """Which part imports which other part."""
    out: dict[str, set[str]] = defaultdict(set)
    for module, targets in graph.edges.items():
        mine = layer_of(module)
        for target in targets:
            theirs = layer_of(target) if target != graph.root.name else ("ground", None)
            if mine[0] == theirs[0] == "parts" and mine[1] != theirs[1]:
                out[mine[1]].add(theirs[1])
    return dict(out)


def part_cycles(parts: dict[str, set[str]]) -> list[str]:
    """A cycle among the parts, as ``a -> b -> a``, or nothing."""
    state: dict[str, int] = {}

    def walk(p: str, path: list[str]) -> list[str]:
        state[p] = 1
        for q in sorted(parts.get(p, ())):
            if state.get(q) == 1:
                return path + [p, q]
            if q not in state:
                found = walk(q, path + [p])
                if found:
                    return found
        state[p] = 2
        return []

    for p in sorted(parts):
        if p not in state:
            found = walk(p, [])
            if found:
                return [" -> ".join(found[found.index(found[-1]):])]
    return []


def private_reaches(graph: Graph) -> list[str]:
    """Imports from outside a part that bypass its ``__init__``, or use a name it does not export."""
    top = graph.root.name
    bad = []
    for module, targets in graph.edges.items():
        mine = layer_of(module)
        for target, uses in targets.items():
            if target == top:
                continue
            theirs = layer_of(target)
            if theirs[0] != "parts" or theirs[1] == mine[1]:
                continue
            package = f"{top}.{theirs[1]}"
            public = graph.exported(package)
            for line, names, named in uses:
                if named != package:
                    bad.append(f"{module} (line {line}) imports {target}: import from {package} instead")
                    continue
                hidden = [n for n in names if n not in public]
                if target != package and target.rsplit(".", 1)[1] not in public:
                    hidden.append(target.rsplit(".", 1)[1])  # a submodule the package does not export
                if hidden:
                    bad.append(f"{module} (line {line}) uses {', '.join(hidden)} of {package}, not in its __all__")
    return bad


@pytest.fixture(scope="module")
def graph() -> Graph:
    return Graph(PACKAGE)


def test_every_module_sits_in_a_layer(graph):
    for module in graph.files:
        assert layer_of(module)[0] in LAYERS


def test_no_import_goes_up_a_layer(graph):
    assert upward_imports(graph) == []


def test_no_import_circles(graph):
    assert cycles(graph) == []


def test_the_parts_import_each_other_without_a_circle(graph):
    parts = part_graph(graph)
    assert part_cycles(parts) == []
    assert not parts.get("audio") and not parts.get("face") and not parts.get("evaluation"), parts


def test_other_layers_use_a_part_only_through_its_public_names(graph):
    assert private_reaches(graph) == []


def test_every_package_says_what_it_is_for_and_exports_its_public_face(graph):
    for path in PACKAGE.rglob("__init__.py"):
        doc = ast.get_docstring(ast.parse(path.read_text()))
        assert doc and len(doc) > 40, f"{path}: say in a docstring what the package is for"
    for part in PARTS:
        assert graph.exported(f"emogene_cli.{part}"), f"{part}/__init__.py has no __all__"


def test_files_stay_short_enough_to_hold_in_mind():
    long = {str(p.relative_to(PACKAGE)): n for p in PACKAGE.rglob("*.py") if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def test_the_command_line_starts_without_loading_the_heavy_libraries():
    """``emogene --help`` and a usage error answer at once: the commands import a pipeline or a part
    (and so torch, OpenCV, MediaPipe) only when they run."""
    code = ("import sys, emogene_cli.cli; heavy = {'torch', 'cv2', 'mediapipe', 'librosa', 'transformers', 'scipy', 'sklearn'}; "
            "print(sorted(heavy & {m.split('.')[0] for m in sys.modules}))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, PYTHONPATH=str(PACKAGE.parent)))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


# -- the checks themselves catch what they are for ------------------------------------------------


def _tree(tmp_path: Path, files: dict[str, str]) -> Graph:
    root = tmp_path / "emogene_cli"
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for folder in [p for p in root.rglob("*") if p.is_dir()] + [root]:
        (folder / "__init__.py").touch()
    return Graph(root)


def test_the_checks_catch_an_upward_import_a_circle_and_a_private_reach(tmp_path):
    g = _tree(tmp_path, {
        "errors.py": "",
        "audio/__init__.py": '"""Audio."""\nfrom .features import load_audio\n__all__ = ["load_audio"]\n',
        "audio/features.py": "def load_audio(): ...\ndef _secret(): ...\n",
        "motion/__init__.py": '"""Motion."""\n',
        "motion/a.py": "from .b import x\n",
        "motion/b.py": "def f():\n    from .a import y\n",
        "render/__init__.py": '"""Render."""\n',
        "render/r.py": "from ..audio.features import load_audio\nfrom ..audio import _secret\nfrom ..pipelines.speak import speak\n",
        "pipelines/speak.py": "from ..audio import load_audio\ndef speak(): ...\n",
        "models/m.py": "from ..motion import a\n",
    })
    assert upward_imports(g) == [
        "emogene_cli.models.m (line 1) imports emogene_cli.motion.a, a higher layer",
        "emogene_cli.render.r (line 3) imports emogene_cli.pipelines.speak, a higher layer",
    ]
    assert cycles(g) == [["emogene_cli.motion.a", "emogene_cli.motion.b"]]
    assert private_reaches(g) == [
        "emogene_cli.models.m (line 1) uses a of emogene_cli.motion, not in its __all__",
        "emogene_cli.render.r (line 1) imports emogene_cli.audio.features: import from emogene_cli.audio instead",
        "emogene_cli.render.r (line 2) uses _secret of emogene_cli.audio, not in its __all__",
    ]
    assert part_cycles({"motion": {"render"}, "render": {"emotion"}, "emotion": {"motion"}}) == ["emotion -> motion -> render -> emotion"]
    assert part_cycles({"motion": {"audio"}, "render": {"motion"}}) == []

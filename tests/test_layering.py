"""The shape of the ``nebtwist`` package: no import cycle, the core below the
requests layer never imports it, and no module over ~800 lines
(issue 11, "A pluggable API front": "No import cycle; no module over ~800
lines"; ``DESIGN.md`` and ``layout-proposal.md``).

The imports are read from the source with :mod:`ast`, not by importing:
``import nebtwist.x``, ``from nebtwist.x import y`` (``y`` a module or a name
in ``nebtwist.x``) and relative imports, at module level and inside functions
and methods alike (an import inside a function closes a cycle as surely as
one at the top, only later). A package's ``__init__`` that imports its own
submodules (re-exports) is no cycle: Python imports the package first.
"""

import ast
import os
import textwrap

from twisted.trial import unittest

import nebtwist

#: The folder holding the ``nebtwist`` package.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(nebtwist.__file__)))

#: The most lines a module may have.
MAX_LINES = 800

#: How far an allow-listed module may grow past its ceiling (room for the
#: fixes being made in the EC2 and S3 fronts while they wait to be split).
GROWTH = 100

#: Modules over :data:`MAX_LINES` that are to be split later, each with its
#: line count when it was listed as its ceiling. THIS LIST MUST ONLY SHRINK:
#: never add a module, never raise a ceiling; remove an entry (or lower it)
#: when the module is split. The test fails when a listed module is gone or
#: no longer over :data:`MAX_LINES`, so that a split also removes its entry.
BIG_MODULES = {
    "nebtwist/mad.py": 1131,
    "nebtwist/cli/econe.py": 944,
    "nebtwist/core/lcm.py": 913,
}

#: Import cycles known and not yet broken, each a frozenset of module names
#: (a strongly connected component of the import graph). Empty: keep it so.
#: Like :data:`BIG_MODULES` it must only shrink.
KNOWN_CYCLES = frozenset()

#: The requests layer: the operations every front calls. Nothing else in
#: ``nebtwist.core`` (the managers, pools and objects below it) imports it.
REQUESTS_LAYER = ("nebtwist.core.requests", "nebtwist.core.requests_")


#: Modules of ``nebtwist.core`` below the requests layer: no front imports them.
CORE_INTERNALS = frozenset(
    "pool db dm lcm vmm tm im scheduler nebula imagem disks recovery vnm hm acl files "
    "sessions context deployment".split())

#: Attributes that reach below the requests layer (the core, its pools, its
#: database, its managers): no front reads them.
CORE_ATTRIBUTES = frozenset(
    "nebula vmpool hostpool imagepool vnpool userpool grouppool tplpool db lcm dm vmm tm im "
    "scheduler".split())


def package_modules(root=ROOT, package="nebtwist"):
    """``{module name: file path}`` for every ``.py`` file of ``package``
    under ``root`` (a package's ``__init__.py`` is named as the package)."""
    modules = {}
    for folder, dirs, files in os.walk(os.path.join(root, package)):
        dirs[:] = sorted(d for d in dirs if not d.startswith((".", "__pycache__")))
        for name in sorted(files):
            if not name.endswith(".py"):
                continue
            path = os.path.join(folder, name)
            parts = os.path.relpath(path, root)[:-3].split(os.sep)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join(parts)] = path
    return modules


def _owner(name, modules):
    """The module in ``modules`` that ``name`` (a module, or a name defined
    in a module) belongs to, or None when it is not one of ours."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def import_graph(modules):
    """``{module: {imported module: line}}`` over ``modules`` (see
    :func:`package_modules`): every import statement anywhere in a module."""
    graph = {}
    for module, path in modules.items():
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read(), path)
        is_package = os.path.basename(path) == "__init__.py"
        edges = graph.setdefault(module, {})
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = module.split(".") if is_package else module.split(".")[:-1]
                    base = base[:len(base) - (node.level - 1)]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                names = [f"{source}.{alias.name}" if f"{source}.{alias.name}" in modules
                         else source for alias in node.names]
            for name in names:
                target = _owner(name, modules)
                if target is not None and target != module:
                    edges.setdefault(target, node.lineno)
    return graph


def cycles(graph):
    """The strongly connected components of ``graph`` with more than one
    module (Tarjan's algorithm, iterative), each a sorted list."""
    index, low, on_stack, stack, found = {}, {}, set(), [], []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, successors = work[-1]
            for succ in successors:
                if succ not in graph:
                    continue
                if succ not in index:
                    index[succ] = low[succ] = counter
                    counter += 1
                    stack.append(succ)
                    on_stack.add(succ)
                    work.append((succ, iter(sorted(graph[succ]))))
                    break
                if succ in on_stack:
                    low[node] = min(low[node], index[succ])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def describe(component, graph, modules):
    """The imports that hold ``component`` together, one per line."""
    lines = []
    for module in component:
        for target, line in sorted(graph[module].items()):
            if target in component:
                where = os.path.relpath(modules[module], ROOT)
                lines.append(f"  {where}:{line}: {module} imports {target}")
    return "\n".join(lines)


def line_count(path):
    with open(path, encoding="utf-8") as f:
        return len(f.read().splitlines())


class ScannerTests(unittest.TestCase):
    """The scanner itself, on a small package made for the test."""

    def make_package(self, files):
        root = self.mktemp()
        for name, text in files.items():
            path = os.path.join(root, name)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w", encoding="utf-8") as f:
                f.write(textwrap.dedent(text))
        return package_modules(root, "pkg")

    def test_function_level_cycle(self):
        """An import inside a function closes a cycle; relative and
        ``from package import module`` forms are followed."""
        modules = self.make_package({
            "pkg/__init__.py": "",
            "pkg/a.py": "from pkg.b import thing\n",
            "pkg/b.py": "def thing():\n    from . import c\n    return c\n",
            "pkg/c.py": "import os\n\ndef f():\n    from .a import x\n",
            "pkg/d.py": "from pkg import a\n",
        })
        graph = import_graph(modules)
        self.assertEqual(graph["pkg.a"], {"pkg.b": 1})
        self.assertEqual(graph["pkg.b"], {"pkg.c": 2})
        self.assertEqual(graph["pkg.d"], {"pkg.a": 1})
        self.assertEqual(cycles(graph), [["pkg.a", "pkg.b", "pkg.c"]])

    def test_package_init(self):
        """A package ``__init__`` re-exporting its submodules is no cycle;
        a submodule importing a name from its package's ``__init__`` that
        comes from that submodule is."""
        modules = self.make_package({
            "pkg/__init__.py": "from pkg.sub import X\n",
            "pkg/sub/__init__.py": "from pkg.sub.x import X\n",
            "pkg/sub/x.py": "X = 1\n",
            "pkg/sub/y.py": "from pkg.sub.x import X\n",
        })
        self.assertEqual(cycles(import_graph(modules)), [])
        modules = self.make_package({
            "pkg/__init__.py": "",
            "pkg/sub/__init__.py": "from pkg.sub.x import X\nY = 2\n",
            "pkg/sub/x.py": "X = 1\n\ndef f():\n    from pkg.sub import Y\n",
        })
        self.assertEqual(cycles(import_graph(modules)), [["pkg.sub", "pkg.sub.x"]])

    def test_no_cycle(self):
        modules = self.make_package({
            "pkg/__init__.py": "",
            "pkg/a.py": "import pkg.b\nimport twisted\n",
            "pkg/b.py": "from pkg.c import *\n",
            "pkg/c.py": "",
        })
        self.assertEqual(cycles(import_graph(modules)), [])


class LayeringTests(unittest.TestCase):
    """The ``nebtwist`` package as it is."""

    _scanned = None

    def setUp(self):
        if LayeringTests._scanned is None:
            modules = package_modules()
            LayeringTests._scanned = (modules, import_graph(modules))
        self.modules, self.graph = LayeringTests._scanned

    def test_scanner_sees_the_package(self):
        """The scan finds the core's imports (a guard against a scan that
        finds nothing and so no cycle)."""
        self.assertIn("nebtwist.core.disks", self.graph["nebtwist.core.dm"])
        self.assertIn("nebtwist.core.disks", self.graph["nebtwist.core.lcm"])
        self.assertIn("nebtwist.core.requests_images", self.graph["nebtwist.core.requests"])

    def test_no_import_cycle(self):
        """No import cycle among ``nebtwist`` modules, at module level or
        through imports inside functions, beyond :data:`KNOWN_CYCLES`."""
        found = [c for c in cycles(self.graph) if frozenset(c) not in KNOWN_CYCLES]
        if found:
            self.fail("import cycles in nebtwist (make the dependencies go one way):\n"
                      + "\n".join(describe(c, self.graph, self.modules) for c in found))
        current = {frozenset(c) for c in cycles(self.graph)}
        stale = [sorted(c) for c in KNOWN_CYCLES if c not in current]
        self.assertEqual(stale, [], "cycles broken: remove them from KNOWN_CYCLES")

    def test_core_does_not_import_requests(self):
        """Nothing in ``nebtwist.core`` below the requests layer imports it:
        the DispatchManager, the LifeCycleManager, the pools and objects are
        called by the requests layer, never the other way."""
        wrong = []
        for module, edges in sorted(self.graph.items()):
            if not module.startswith("nebtwist.core.") or module.startswith(REQUESTS_LAYER):
                continue
            for target, line in sorted(edges.items()):
                if target.startswith(REQUESTS_LAYER):
                    wrong.append(f"{os.path.relpath(self.modules[module], ROOT)}:{line}: "
                                 f"{module} imports {target}")
        self.assertEqual(wrong, [])

    def test_fronts_use_only_the_requests_layer(self):
        """No module of ``nebtwist.api`` (the fronts) imports the core's
        pools, database or managers, nor reaches for the core's ``nebula``,
        a pool, the database or a manager by attribute: a front calls the
        requests layer it is given (DESIGN: fronts translate, the core
        decides). The one value type a front may import from below is
        :class:`nebtwist.core.pool.PoolXML`, the XML-RPC listing reply."""
        wrong = []
        for module, path in sorted(self.modules.items()):
            if not module.startswith("nebtwist.api."):
                continue
            rel = os.path.relpath(path, ROOT)
            with open(path, encoding="utf-8") as f:
                tree = ast.parse(f.read(), path)
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                        "nebtwist.core."):
                    below = node.module.split(".")[2]
                    names = {alias.name for alias in node.names}
                    if below in CORE_INTERNALS and not (below == "pool"
                                                        and names == {"PoolXML"}):
                        wrong.append(f"{rel}:{node.lineno}: imports {node.module}")
                elif isinstance(node, ast.Import):
                    for alias in node.names:
                        parts = alias.name.split(".")
                        if parts[:2] == ["nebtwist", "core"] and len(parts) > 2 \
                                and parts[2] in CORE_INTERNALS:
                            wrong.append(f"{rel}:{node.lineno}: imports {alias.name}")
                elif isinstance(node, ast.Attribute) and node.attr in CORE_ATTRIBUTES:
                    wrong.append(f"{rel}:{node.lineno}: .{node.attr}")
        self.assertEqual(wrong, [])

    def test_module_size(self):
        """No module over :data:`MAX_LINES` lines, but those of
        :data:`BIG_MODULES`, which may not grow past their ceiling plus
        :data:`GROWTH`."""
        too_big = []
        for module, path in sorted(self.modules.items()):
            rel = os.path.relpath(path, ROOT).replace(os.sep, "/")
            lines = line_count(path)
            limit = BIG_MODULES[rel] + GROWTH if rel in BIG_MODULES else MAX_LINES
            if lines > limit:
                too_big.append(f"{rel}: {lines} lines, over {limit}")
        self.assertEqual(too_big, [], "split these modules by concern")

    def test_big_modules_only_shrink(self):
        """Each module of :data:`BIG_MODULES` still exists and is still over
        :data:`MAX_LINES`: a module split leaves the list."""
        stale = []
        for rel in sorted(BIG_MODULES):
            path = os.path.join(ROOT, *rel.split("/"))
            if not os.path.exists(path):
                stale.append(f"{rel}: gone")
            elif line_count(path) <= MAX_LINES:
                stale.append(f"{rel}: {line_count(path)} lines")
        self.assertEqual(stale, [], "remove these from BIG_MODULES")

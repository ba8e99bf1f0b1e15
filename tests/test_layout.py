"""The house rules, read from the code: the HTTP side and the storage side never import each other,
nothing they share imports either, no modules import each other in a circle, modules and
functions stay short, and no test module imports another."""

import ast
import functools
import importlib
import inspect
import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "attolytics"
TESTS = ROOT / "tests"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 50
# Top-level modules both sides may import: they import neither side themselves.
SHARED = ["config", "interfaces", "logs", "metrics", "outcomes", "reconfigurable", "request_values", "rfc3339", "shutdown",
          "systemd", "twisted_internals"]


@functools.cache
def syntax_tree(path: Path) -> ast.Module:
    """The module at `path`, parsed once for all the rules."""
    return ast.parse(path.read_text(), str(path))


def modules(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.py") if "__pycache__" not in p.parts)


def imported(path: Path) -> set[str]:
    """Every module name `path` imports (absolute names; relative imports are not used)."""
    names = set()
    for node in ast.walk(syntax_tree(path)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def importers_of(prefix: str, folder: Path) -> list[str]:
    return [f"{path.relative_to(ROOT)} imports {name}"
            for path in modules(folder) for name in imported(path)
            if name == prefix or name.startswith(prefix + ".")]


def test_storage_never_imports_the_http_side():
    assert importers_of("attolytics.http", PACKAGE / "storage") == []


def test_the_http_side_never_imports_storage():
    assert importers_of("attolytics.storage", PACKAGE / "http") == []


def test_the_live_view_stands_above_the_http_side_and_apart_from_storage():
    assert importers_of("attolytics.live", PACKAGE / "http") == []
    assert importers_of("attolytics.storage", PACKAGE / "live") == []


@pytest.mark.parametrize("name", SHARED)
def test_what_both_sides_share_imports_neither(name):
    path = PACKAGE / name
    folder_or_file = path if path.is_dir() else path.with_suffix(".py")
    found = []
    for side in ("attolytics.http", "attolytics.storage", "attolytics.service", "attolytics.tap"):
        if folder_or_file.is_dir():
            found += importers_of(side, folder_or_file)
        else:
            found += [f"{name}.py imports {n}" for n in imported(folder_or_file)
                      if n == side or n.startswith(side + ".")]
    assert found == []


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_no_modules_import_each_other_in_a_circle():
    """Not even through a function-level import: each module is read before the ones it imports."""
    graph = {module_name(path): set() for path in modules(PACKAGE)}
    for path in modules(PACKAGE):
        for name in imported(path):
            # `from package import module` names the package; count the module it reaches.
            while name and name not in graph:
                name = name.rpartition(".")[0]
            if name and name != module_name(path):
                graph[module_name(path)].add(name)
    circles, done, path_so_far = [], set(), []

    def visit(name):
        if name in path_so_far:
            circles.append(path_so_far[path_so_far.index(name):] + [name])
            return
        if name in done:
            return
        path_so_far.append(name)
        for other in sorted(graph[name]):
            visit(other)
        path_so_far.pop()
        done.add(name)

    for name in sorted(graph):
        visit(name)
    assert circles == []


def test_no_module_is_longer_than_400_lines():
    long = {str(p.relative_to(ROOT)): n for p in modules(PACKAGE)
            if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES}
    assert long == {}


def test_no_function_is_longer_than_50_lines():
    long = {}
    for path in modules(PACKAGE):
        for node in ast.walk(syntax_tree(path)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long[f"{path.relative_to(ROOT)}:{node.name}"] = lines
    assert long == {}


def test_every_module_says_what_it_is_for():
    assert [str(p.relative_to(ROOT)) for p in modules(PACKAGE)
            if not ast.get_docstring(syntax_tree(p))] == []


def test_no_test_module_imports_another():
    test_modules = {p.stem for p in TESTS.glob("*.py")}
    found = [f"{path.name} imports {name}" for path in modules(TESTS) for name in imported(path)
             if name.split(".")[0] in test_modules]
    assert found == []


def module_stems() -> list[str]:
    """The name of every module of the package, without its folder (packages' faces left out)."""
    return sorted(p.stem for p in modules(PACKAGE) if p.name != "__init__.py")


def test_no_two_modules_differ_only_by_a_plural():
    stems = set(module_stems())
    assert sorted(f"{stem} and {stem}s" for stem in stems if f"{stem}s" in stems) == []


def test_no_module_name_is_used_in_two_folders():
    stems = module_stems()
    assert sorted({stem for stem in stems if stems.count(stem) > 1}) == []


# Twisted's private parts are used in attolytics/twisted_internals.py alone.

INTERNALS = PACKAGE / "twisted_internals.py"
# Those the code used before they were gathered: the module's docstring must keep naming them.
ONCE_SPREAD = {"_disconnected", "_path", "_shouldShutdown", "numberAccepts", "_IEncodingResource",
               "_encoder", "_handleStar", "_parsePOSTFormSubmission", "_respondToBadRequestAndDisconnect"}


def internals_listed() -> set[str]:
    """The names twisted_internals.py's docstring puts in backquotes: those it uses or replaced."""
    return set(re.findall(r"`(\w+)`", ast.get_docstring(syntax_tree(INTERNALS))))


def names_in(tree: ast.AST) -> set[str]:
    """Every identifier a module names (attributes, names, imports, definitions, keyword
    arguments) and every string constant it holds (getattr(x, "_name") names one too)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            found.add(node.attr)
        elif isinstance(node, ast.Name):
            found.add(node.id)
        elif isinstance(node, ast.alias):
            found.update(filter(None, (node.name.split(".")[-1], node.asname)))
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            found.add(node.name)
        elif isinstance(node, ast.keyword) and node.arg:
            found.add(node.arg)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            found.add(node.value)
    return found


def test_the_twisted_internals_module_lists_what_it_uses():
    assert ONCE_SPREAD <= internals_listed()


def test_no_other_module_names_a_twisted_internal():
    listed = internals_listed()
    found = {f"{path.relative_to(ROOT)}: {name}" for path in modules(PACKAGE) if path != INTERNALS
             for name in names_in(syntax_tree(path)) & listed}
    assert sorted(found) == []


def test_no_other_module_imports_a_private_part_of_twisted():
    found = []
    for path in modules(PACKAGE):
        if path == INTERNALS:
            continue
        for node in ast.walk(syntax_tree(path)):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "twisted":
                names = node.module.split(".") + [alias.name for alias in node.names]
            elif isinstance(node, ast.Import):
                names = [part for alias in node.names if alias.name.split(".")[0] == "twisted"
                         for part in alias.name.split(".")]
            else:
                continue
            found += [f"{path.relative_to(ROOT)}: {name}" for name in names if name.startswith("_")]
    assert found == []


def twisted_bases(tree: ast.Module, node: ast.ClassDef) -> list[type]:
    """The Twisted classes (and those of twisted_internals) a class of the package derives from
    directly, found by the names its module imports."""
    imports = {}
    for statement in ast.walk(tree):
        if isinstance(statement, ast.ImportFrom) and statement.module:
            imports.update({alias.asname or alias.name: f"{statement.module}.{alias.name}"
                            for alias in statement.names})
        elif isinstance(statement, ast.Import):
            imports.update({alias.asname or alias.name: alias.name for alias in statement.names})
    bases = []
    for base in node.bases:
        dotted = ast.unparse(base).split(".")
        full = ".".join([imports.get(dotted[0], dotted[0])] + dotted[1:])
        module, _, name = full.rpartition(".")
        if module.startswith("twisted.") or module == "attolytics.twisted_internals":
            bases.append(getattr(importlib.import_module(module), name))
    return bases


def test_no_subclass_of_twisted_touches_a_private_name_of_its_base():
    """`self._x` in a class derived from Twisted's, where Twisted's own code of the base names
    `_x`, is a private part of Twisted reached from outside twisted_internals.py."""
    found = []
    for path in modules(PACKAGE):
        if path == INTERNALS:
            continue
        tree = syntax_tree(path)
        for node in ast.walk(tree):
            if not isinstance(node, ast.ClassDef) or not (bases := twisted_bases(tree, node)):
                continue
            source = "\n".join(inspect.getsource(cls) for base in bases for cls in base.__mro__
                               if cls.__module__.startswith("twisted."))
            private = {n.attr for n in ast.walk(node) if isinstance(n, ast.Attribute)
                       and ast.unparse(n.value) == "self" and re.fullmatch(r"_[A-Za-z]\w*", n.attr)}
            private |= {n.name for n in node.body if isinstance(n, ast.FunctionDef)
                        and re.fullmatch(r"_[A-Za-z]\w*", n.name)}
            found += [f"{path.relative_to(ROOT)}: {node.name}.{name}" for name in sorted(private)
                      if re.search(rf"\b{name}\b", source)]
    assert found == []


# No hidden process-wide state (issue 18, point 7): importing a module changes nothing, and the
# code that builds the service takes no class to build in its place (tests and the benchmark use
# the same constructors).

def test_importing_a_module_calls_nothing_and_no_function_rebinds_a_global():
    """At the top of a module only names are bound (imports, definitions, constants, loggers):
    no call for its effect, such as prometheus_client's disable_created_metrics()."""
    found = []
    for path in modules(PACKAGE):
        tree = syntax_tree(path)
        for node in tree.body:
            if isinstance(node, ast.Expr) and not isinstance(node.value, ast.Constant):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} calls at import")
        found += [f"{path.relative_to(ROOT)}:{node.lineno} rebinds a global"
                  for node in ast.walk(tree) if isinstance(node, ast.Global)]
    assert found == []


# The modules that build and start the service tree.
BUILDERS = ["service.py", "tap.py", "supervisor.py", "worker.py", "storage/writer.py", "storage/database.py",
            "storage/maintenance.py", "storage/embedded.py", "http/endpoint.py"]


def hook_parameters(path: Path) -> list[str]:
    """Parameters of constructors and module functions named like a hook that swaps what gets
    built: `make`, `*_factory`, `*_class`."""
    found = []
    tree = syntax_tree(path)
    functions = [node for node in tree.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))]
    for cls in (node for node in tree.body if isinstance(node, ast.ClassDef)):
        functions += [node for node in cls.body if isinstance(node, ast.FunctionDef) and node.name == "__init__"]
    for function in functions:
        arguments = function.args.posonlyargs + function.args.args + function.args.kwonlyargs
        found += [f"{path.relative_to(ROOT)}:{function.name}({argument.arg})" for argument in arguments
                  if argument.arg == "make" or argument.arg.endswith(("_factory", "_class"))]
    return found


def test_no_production_constructor_takes_a_class_to_build_as_a_hook():
    assert [found for name in BUILDERS for found in hook_parameters(PACKAGE / name)] == []

"""Every third-party import of the package, its tests and benchmarks is declared, and CI installs fresh.

An import that only works because the developer's machine happens to have the package installed is
the failure a newcomer meets first (torch_pruning was one); these tests read the sources, not the
environment's luck.
"""
import ast
import importlib.metadata
import re
import sys
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from Python 3.11")

REPO_ROOT = Path(__file__).resolve().parent.parent
FIRST_PARTY = {"mbdlfast", "kernels"}
# test-only helper modules imported by name from tests/ and benchmarks/
LOCAL_MODULES = {path.stem for folder in ("tests", "benchmarks") for path in (REPO_ROOT / folder).glob("*.py")}


def _requirement_name(requirement: str) -> str:
    return re.split(r"[\s<>=!~;\[]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def declared() -> dict[str, set[str]]:
    """Distribution names per group: 'package' (dependencies), and each optional extra."""
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    groups = {"package": {_requirement_name(r) for r in project["dependencies"]}}
    for extra, requirements in project.get("optional-dependencies", {}).items():
        groups[extra] = {_requirement_name(r) for r in requirements}
    return groups


def imported_modules(folder: str) -> dict[str, str]:
    """Top-level module -> a file importing it, from ``import``/``from`` statements and the names given
    to the tests' reference_module / pytest.importorskip."""
    found = {}
    for path in sorted((REPO_ROOT / folder).rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            elif (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None))
                  in ("reference_module", "importorskip") and node.args and isinstance(node.args[0], ast.Constant)):
                names = [node.args[0].value]
            for name in names:
                found.setdefault(name.split(".")[0], str(path.relative_to(REPO_ROOT)))
    return found


def third_party(modules: dict[str, str]) -> dict[str, str]:
    return {name: where for name, where in modules.items()
            if name not in sys.stdlib_module_names and name not in FIRST_PARTY | LOCAL_MODULES | {"__future__"}}


def distribution_of(module: str) -> set[str]:
    """The installed distribution(s) that provide the top-level ``module``."""
    return {name.lower().replace("_", "-") for name in importlib.metadata.packages_distributions().get(module, [])}


# (folder, the groups whose declarations cover its imports, what else installs a package for it)
CASES = [
    ("mbdlfast", ("package", "triton"), set()),  # Triton is optional: imported where a backend needs it
    ("kernels", ("package", "triton"), set()),
    ("tests", ("package", "test"), {"fastmri"}),  # fastMRI: `make install` adds it with --no-deps
    ("benchmarks", ("package", "test", "bench"), set()),
    ("examples", ("package",), set()),
]


@pytest.mark.parametrize("folder, groups, installed_by_make", CASES, ids=[case[0] for case in CASES])
def test_every_import_is_declared(folder, groups, installed_by_make):
    covered = set().union(*(declared()[group] for group in groups)) | installed_by_make
    missing = {}
    for module, where in third_party(imported_modules(folder)).items():
        providers = distribution_of(module) or {module.lower().replace("_", "-")}
        if not providers & covered:
            missing[module] = (where, sorted(providers))
    assert not missing, f"imports in {folder}/ that pyproject.toml does not declare (module: file, distribution): {missing}"


def test_torch_pruning_is_pinned_to_a_range():
    requirement = next(r for r in tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
                       if _requirement_name(r) == "torch-pruning")
    assert ">=" in requirement and "<" in requirement.replace("<=", ""), requirement


def test_makefile_installs_fastmri_and_its_imports_are_declared():
    makefile = (REPO_ROOT / "Makefile").read_text()
    assert re.search(r"--no-deps \"fastmri==", makefile)
    assert "requests" in declared()["test"]  # fastmri.data imports it at module level


def test_ci_makes_a_fresh_environment_and_runs_the_readme_commands():
    script = (REPO_ROOT / ".ci" / "run").read_text()
    assert "mktemp -d" in script and "-m venv" in script and "README.md" in script
    assert "\nmake demo\n" in script and "\nmake test\n" in script
    readme = (REPO_ROOT / "README.md").read_text()
    quickstart = readme.split("## Quickstart", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    assert [line for line in quickstart.splitlines() if line.strip()] == ["make demo", "make test"]

"""Layers without back-arrows: no module of mbdlfast (or kernels/) imports a higher layer, not even lazily
inside a function. Read from the source with ast, so an import hidden in a function body counts."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Low to high. A unit (a subpackage or a top-level module of mbdlfast) may import its own modules and
# units of lower layers only; units of one layer do not import each other.
LAYERS = [
    ["kernels", "mbdlfast._build", "mbdlfast._validation", "mbdlfast.sync_guard", "mbdlfast.outputs",
     "mbdlfast.shared_data"],
    ["mbdlfast._extension"],
    ["mbdlfast"],  # the package's __init__ (version, extension loading)
    ["mbdlfast.ops"],
    ["mbdlfast.physics", "mbdlfast.metrics", "mbdlfast.sr_metrics", "mbdlfast.info"],
    ["mbdlfast.deq", "mbdlfast.data"],
    ["mbdlfast.models"],
    ["mbdlfast.dip", "mbdlfast.evaluation", "mbdlfast.inference", "mbdlfast.gpu_report"],
    ["mbdlfast.prune", "mbdlfast.figures"],
    ["mbdlfast.training", "mbdlfast.gan"],  # configs, registry, checkpoints, objective, trainer, DDP; GAN priors
    ["mbdlfast.finetune"],  # fine-tuning modes on the trainer
    ["mbdlfast.pretrained"],
    ["mbdlfast.reconstruct", "mbdlfast.super_resolution"],
    ["mbdlfast.experiments"],  # demo, its figures, the PUN study
    ["mbdlfast.commands"],
    ["mbdlfast.cli"],
    ["mbdlfast.__main__"],
]
LAYER_OF = {unit: index for index, units in enumerate(LAYERS) for unit in units}


def unit_of(module: str) -> str:
    """The layering unit of a dotted module name: kernels, mbdlfast, or mbdlfast.<first part>."""
    parts = module.split(".")
    if parts[0] == "kernels":
        return "kernels"
    if len(parts) == 1:
        return "mbdlfast"
    if parts[1] == "__version__":
        return "mbdlfast"
    if parts[1].startswith("_C") or parts[1] == "kernels":  # compiled extensions; kernels/ installed in the package
        return "mbdlfast._extension" if parts[1].startswith("_C") else "kernels"
    return f"mbdlfast.{parts[1]}"


def source_files() -> list[Path]:
    return sorted([*(REPO / "mbdlfast").rglob("*.py"), *(REPO / "kernels").rglob("*.py")])


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, dotted name) of every absolute import of mbdlfast or kernels in the file, at any depth."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module in ("mbdlfast", "kernels"):  # from mbdlfast import ops: the name is the module
                found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
            else:
                found.append((node.lineno, node.module))
    return [(line, name) for line, name in found if name.split(".")[0] in ("mbdlfast", "kernels")]


def test_every_unit_has_a_layer():
    units = {unit_of(module_name(path)) for path in source_files()}
    assert not units - set(LAYER_OF), f"add these to LAYERS: {sorted(units - set(LAYER_OF))}"


@pytest.mark.parametrize("path", source_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_no_module_imports_a_higher_layer(path):
    own = unit_of(module_name(path))
    wrong = []
    for line, name in imported_modules(path):
        target = unit_of(name)
        if target != own and LAYER_OF.get(target, -1) >= LAYER_OF[own]:
            wrong.append(f"line {line}: {name} (layer {LAYER_OF.get(target)} '{target}', "
                         f"this module is in layer {LAYER_OF[own]} '{own}')")
    assert not wrong, "imports of a higher (or the same) layer:\n" + "\n".join(wrong)

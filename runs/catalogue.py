"""``python main.py --list``: what a recipe or a command line can name -- recipes, datasets, models and
attention blocks -- read from the registries and the recipe folder, so the list is never out of date."""
from __future__ import annotations

from rich.table import Table

from .config import RECIPES
from .progress import console


def _recipe_line(path) -> str:
    """The recipe header's first sentence (up to its first ':' or '.')."""
    head = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        head.append(line.lstrip("# ").strip())
    text = " ".join(head)
    cut = min((i for i in (text.find(": "), text.find(". ")) if i > 0), default=len(text))
    return text[:cut]


def print_catalogue() -> None:
    from data import DATASETS
    from models import MODELS
    from models.attention import ATTENTION_BLOCKS, resolve_block
    from models.factory import ALWAYS, COMMON, accepted_arguments
    resolve_block("mla")                              # registers the MLA blocks
    recipes = Table("recipe (--config NAME)", "what it reproduces", title="recipes (runs/recipes/)")
    for p in sorted(RECIPES.glob("*.yaml")):
        recipes.add_row(p.stem, _recipe_line(p))
    datasets = Table("dataset (--dataset NAME)", "layout under the data root", title="datasets")
    for name in DATASETS.names():
        info = DATASETS.info(name)
        datasets.add_row(name + (" (test only)" if info.test_only else ""), info.layout)
    datasets.add_row("market:PATH", "a Market-format tree at PATH, any name: PATH/{bounding_box_train,"
                     "bounding_box_test,query}/ (the data root does not apply)")
    datasets.add_row("folder:PATH", "your own unlabelled crops, any names and nesting (unsupervised; cameras: "
                     "data.camera_from / camera_pattern / labels_csv)")
    models = Table("model (model.name)", "its own arguments (model.args.*)", "common keys it takes (model.*)",
                   title="models")
    for name in MODELS.names():
        accepted = accepted_arguments(MODELS.get(name))
        models.add_row(name, ", ".join(a for a in accepted if a not in ALWAYS + COMMON) or "-",
                       ", ".join(a for a in accepted if a in COMMON) or "-")
    blocks = Table("attention block (model.attention)", "arguments (model.attention_args.*)",
                   title="attention blocks (or an import path package.module:Class)")
    for name in ATTENTION_BLOCKS.names():
        accepted = accepted_arguments(ATTENTION_BLOCKS.get(name))
        blocks.add_row(name, ", ".join(a for a in accepted if a not in ("channels", "height", "width")) or "-")
    for table in (recipes, datasets, models, blocks):
        console.print(table)

"""``python main.py --list``: what a recipe or a command line can name -- recipes, datasets, models and
attention blocks -- read from the registries and the recipe folder, so the list is never out of date."""
from __future__ import annotations

from rich.table import Table

from .config import RECIPES
from reidlab.progress import console


def recipe_description(path) -> str:
    """The recipe header's opening paragraph, in whole sentences: its comment lines up to the first blank or
    indented one (a table of values) or the end of the header. A paragraph that ends by introducing the table
    (``... of section 3. They are:``) ends at the sentence before (``... of section 3.``); one that is a single
    introducing sentence loses its closing ':'."""
    head = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        text = line[1:]
        if not text.strip() or text.startswith("   "):
            break
        head.append(text.strip())
    text = " ".join(head).strip()
    if text.endswith(":"):
        cut = text.rfind(". ")
        text = text[:cut + 1] if cut > 0 else text.rstrip(":")
    return text.strip()


def recipe_mode(path) -> str:
    """The mode the recipe runs (its ``mode``, or its base's)."""
    from .config import build_config
    return build_config(str(path)).mode


def print_catalogue() -> None:
    from rich.markup import escape

    from reidlab.data import DATASETS
    from reidlab.models import MODELS
    from reidlab.models.attention import ATTENTION_BLOCKS, resolve_block
    from reidlab.models.factory import ALWAYS, COMMON, accepted_arguments
    resolve_block("mla")                              # registers the MLA blocks
    # one column (name, mode, then the description) so that a long recipe name leaves the description the
    # terminal's width: beside a 37-character name an 80-column terminal would fold its file names mid-word
    recipes = Table("recipe (--config NAME) (mode): what it reproduces", title="recipes (reidlab/runs/recipes/)")
    for p in sorted(RECIPES.glob("*.yaml")):
        recipes.add_row(f"[bold]{p.stem}[/bold] ({recipe_mode(p)}): {escape(recipe_description(p))}")
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


def recipe_header(path) -> str:
    """The recipe's whole header comment: its source, every value's citation and where we chose."""
    lines = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        lines.append(line[2:] if line.startswith("# ") else line[1:])
    return "\n".join(lines).strip("\n")


def recipes_page() -> str:
    """docs/recipes.md: every shipped recipe with its mode, its base and its header (the paper or code each
    value comes from, and where we had to choose); written by ``python -m reidlab.runs.config_doc --write``."""
    import yaml
    paths = sorted(RECIPES.glob("*.yaml"))
    lines = ["# Recipes", "",
             "Every shipped recipe (`reidlab/runs/recipes/`), run with `python main.py --config NAME`. Each one's "
             "header cites the paper section or table (or the code the paper follows) for its values, and says "
             "where we had to choose or depart from the source. Generated from the recipe files by "
             "`python -m reidlab.runs.config_doc --write`; `tests/test_config_doc.py` fails when it is out of date. "
             "A recipe of your own: any YAML file, given as `--config path/to/mine.yaml`, which may start from a "
             "shipped one with `_base_: demo.yaml`; `docs/config.md` lists every key.", "",
             "| recipe | mode | base | what it reproduces |", "| --- | --- | --- | --- |"]
    for p in paths:
        base = (yaml.safe_load(p.read_text()) or {}).get("_base_", "")
        lines.append(f"| [`{p.stem}`](#{p.stem}) | {recipe_mode(p)} | {base.removesuffix('.yaml') or '-'} | "
                     f"{recipe_description(p).replace('|', '/')} |")
    for p in paths:
        lines += ["", f"## {p.stem}", "", f"`python main.py --config {p.stem}` ({recipe_mode(p)})", "", "```text",
                  recipe_header(p), "```"]
    return "\n".join(lines) + "\n"

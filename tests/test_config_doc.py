"""docs/config.md is the config's own declarations (runs/config_doc.py): it fails when they disagree, when a key
has no meaning, and --print-config --explain is the config with those meanings, loadable as it is."""
import re

import yaml

from reidlab.runs.config import all_keys, build_config
from reidlab.runs.catalogue import recipes_page
from reidlab.runs.config import RECIPES
from reidlab.runs.config_doc import PAGE, RECIPES_PAGE, entries, explain, page


def test_the_pages_are_the_declarations_and_the_recipes():
    assert PAGE.read_text() == page(), "docs/config.md is out of date: python -m reidlab.runs.config_doc --write"
    assert RECIPES_PAGE.read_text() == recipes_page(), "docs/recipes.md is out of date: same command"
    text = RECIPES_PAGE.read_text()
    assert all(f"## {p.stem}\n" in text for p in RECIPES.glob("*.yaml"))
    assert "| [`demo`](#demo) | unsup | cluster_contrast_resnet50 |" in text


def test_every_key_and_section_says_what_it_means():
    rows = entries()
    keys = [e["key"] for e in rows if "key" in e]
    assert keys == all_keys()
    assert not [k for k in rows if "key" in k and not k["meaning"]]
    assert all(e["doc"] and "Config(" not in e["doc"] for e in rows if "section" in e)
    text = PAGE.read_text()
    assert all(f"| `{k}` |" in text for k in keys)


def test_explain_is_the_config_with_its_meanings(main_in_process):
    cfg = build_config("demo", [{"data": {"camera_pattern": r"_c(\d+) #x"}}])
    text = explain(cfg)
    assert yaml.safe_load(text) == cfg.to_dict()
    assert "  eps: 0.4  # DBSCAN's radius" in text and "one of 'unsup', 'supervised'" in text
    code, out, _ = main_in_process("--config", "demo", "--print-config", "--explain")
    assert code == 0 and yaml.safe_load(out) == build_config("demo").to_dict() and "# the base learning rate" in out
    code, _, err = main_in_process("--config", "demo", "--explain")
    assert code == 2 and "--print-config" in err


def test_the_readme_is_the_entry_point_and_every_link_resolves():
    root = PAGE.parents[1]
    readme = (root / "README.md").read_text()
    assert len(readme.splitlines()) <= 250
    pages = sorted(p.name for p in (root / "docs").glob("*.md"))
    assert all(f"(docs/{name})" in readme for name in pages), "a docs page the README does not link"
    for doc in [root / "README.md", *sorted((root / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", doc.read_text()):
            if "://" not in target:
                assert (doc.parent / target).exists(), f"{doc.name}: link to {target} leads nowhere"

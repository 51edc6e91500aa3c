"""The configuration reference, read from the declarations in runs/config.py, so that it cannot drift:
every key's type, default, what it allows (the ``key(...)`` metadata that ``validate`` checks) and its
meaning (the comment on the key's line and the comment lines right above it; a section's class docstring).

    python -m reidlab.runs.config_doc --write        # docs/config.md and docs/recipes.md (tests/test_config_doc.py)
    python main.py --config demo --print-config --explain   # a config's values with their meanings
"""
from __future__ import annotations

import dataclasses
import io
import sys
import tokenize
from pathlib import Path
from typing import get_type_hints

import yaml

from . import config as config_module
from .config import Config, allowed

PAGE = Path(__file__).resolve().parents[2] / "docs" / "config.md"
RECIPES_PAGE = PAGE.parent / "recipes.md"


def _comments() -> dict[tuple[str, str], str]:
    """(class name, field name) -> its comment text: the comment lines right above the field, then the one
    on its line (a field's declaration may span lines: the comments of all its lines)."""
    source = Path(config_module.__file__).read_text()
    out: dict[tuple[str, str], str] = {}
    above: list[str] = []
    cls = None
    current: tuple[str, str] | None = None
    depth = 0
    tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    for n, tok in enumerate(tokens):
        if tok.type == tokenize.NAME and tok.string == "class" and tok.start[1] == 0:
            cls, above, current = tokens[n + 1].string, [], None
        elif tok.type == tokenize.NAME and tok.start[1] == 4 and cls and depth == 0 \
                and n + 1 < len(tokens) and tokens[n + 1].string == ":":
            current = (cls, tok.string)
            out[current] = " ".join(above)
            above = []
        elif tok.type == tokenize.COMMENT:
            text = tok.string.lstrip("#").strip()
            if tok.start[1] == 4 and tokens[n - 1].type in (tokenize.NL, tokenize.NEWLINE, tokenize.INDENT,
                                                             tokenize.DEDENT, tokenize.COMMENT):
                above.append(text)
            elif current:
                out[current] = (out[current] + " " + text).strip()
        elif tok.type == tokenize.OP and tok.string in "([{":
            depth += 1
        elif tok.type == tokenize.OP and tok.string in ")]}":
            depth -= 1
        elif tok.type == tokenize.NEWLINE:
            current = None if depth == 0 else current
        elif tok.type == tokenize.NAME and tok.string == "def" and tok.start[1] == 4:
            above, current = [], None
    return out


def _type_name(t) -> str:
    return getattr(t, "__name__", str(t))


def entries(obj=None, prefix: str = "") -> list[dict]:
    """Every key of the config, in declaration order: key, type, default, allowed, meaning; and each
    section's heading (``{"section": name, "doc": docstring}``)."""
    obj = obj or Config()
    notes = _comments()
    hints = get_type_hints(type(obj))
    out = []
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            doc = (type(value).__doc__ or "").strip()
            out.append({"section": prefix + f.name, "doc": " ".join(doc.split())})
            out += entries(value, f"{prefix}{f.name}.")
        else:
            out.append({"key": prefix + f.name, "type": _type_name(hints[f.name]), "default": value,
                        "allowed": allowed(f.metadata) if f.metadata else "any " + _type_name(hints[f.name]),
                        "meaning": notes.get((type(obj).__name__, f.name), "")})
    return out


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _value(v) -> str:
    return yaml.safe_dump(v, default_flow_style=True, width=10 ** 6).strip().removesuffix("...").strip()


def page() -> str:
    """docs/config.md."""
    lines = ["# Configuration reference", "",
             "Every key a recipe (`--config`) or `--set KEY=VALUE` can give, with its type, default, what it "
             "allows (checked when the config is built: a value outside is an error with exit code 2) and its "
             "meaning. Generated from the declarations in `reidlab/runs/config.py` by "
             "`python -m reidlab.runs.config_doc --write`; `tests/test_config_doc.py` fails when this page and the "
             "code disagree. `python main.py --config NAME --print-config --explain` shows a recipe's values "
             "with these meanings.", ""]
    table_open = False
    for e in entries():
        if "section" in e:
            lines += ["", f"## `{e['section']}`", ""]
            if e["doc"]:
                lines += [e["doc"], ""]
            lines += ["| key | type | default | allowed | meaning |", "| --- | --- | --- | --- | --- |"]
            table_open = True
            continue
        if not table_open:
            lines += ["## top level", "", "| key | type | default | allowed | meaning |",
                      "| --- | --- | --- | --- | --- |"]
            table_open = True
        lines.append(f"| `{e['key']}` | {e['type']} | `{_cell(_value(e['default']))}` | {_cell(e['allowed'])} | "
                     f"{_cell(e['meaning'])} |")
    return "\n".join(lines).replace("\n\n\n", "\n\n") + "\n"


def explain(cfg: Config) -> str:
    """The config as YAML with each key's meaning and allowed values as a comment after it."""
    notes = {e["key"]: e for e in entries() if "key" in e}
    out = []

    def walk(obj, prefix: str, indent: str):
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if dataclasses.is_dataclass(value):
                out.append(f"{indent}{f.name}:")
                walk(value, f"{prefix}{f.name}.", indent + "  ")
                continue
            e = notes[prefix + f.name]
            note = "; ".join(x for x in (e["meaning"], e["allowed"]) if x and not x.startswith("any "))
            out.append(f"{indent}{f.name}: {_value(value)}  # {note}")
    walk(cfg, "", "")
    return "\n".join(out) + "\n"


def main(argv=None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args == ["--write"]:
        from .catalogue import recipes_page
        PAGE.write_text(page())
        RECIPES_PAGE.write_text(recipes_page())
        print(f"wrote {PAGE} and {RECIPES_PAGE}")
        return 0
    if args:
        print("usage: python -m reidlab.runs.config_doc [--write]   (without --write: the page on stdout)")
        return 2
    print(page(), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())

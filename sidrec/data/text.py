"""Item text from a template over the available fields; missing fields are skipped."""

from __future__ import annotations

import html
import re
import string

from sidrec.data.dataset import ITEM_TEXT_FIELDS
from sidrec.errors import ConfigError, DataError

SEGMENT_SEPARATOR = " | "
_SPACES = re.compile(r"\s+")


def clean(value) -> str:
    """HTML entities unescaped (raw Amazon titles still carry &amp;), whitespace collapsed."""
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        # categories: a list of category paths, each a list of names
        paths = [" > ".join(clean(v) for v in p) if isinstance(p, (list, tuple)) else clean(p) for p in value]
        return "; ".join(dict.fromkeys(p for p in paths if p))
    if isinstance(value, float):
        return f"{value:.2f}"
    return _SPACES.sub(" ", html.unescape(html.unescape(str(value)))).strip()


def template_fields(template: str) -> list[str]:
    fields = [name for _, name, _, _ in string.Formatter().parse(template) if name]
    unknown = sorted(set(fields) - set(ITEM_TEXT_FIELDS) - {"item_id", "asin"})
    if unknown:
        raise ConfigError(
            f"data.text_template uses unknown field(s) {unknown}; available: {', '.join(ITEM_TEXT_FIELDS)}"
        )
    return fields


def check_text_settings(template: str, missing_text: str) -> None:
    """data.text_template and data.missing_text."""
    template_fields(template)
    if missing_text not in ("error", "id"):
        raise ConfigError(f"data.missing_text={missing_text!r}: expected error or id")


def render(item: dict, template: str, max_chars: int = 2000) -> str:
    """Each " | "-separated segment is kept only if all the fields it names are present."""
    parts = []
    for segment in template.split(SEGMENT_SEPARATOR):
        names = [name for _, name, _, _ in string.Formatter().parse(segment) if name]
        values = {name: clean(item.get(name)) for name in names}
        if names and all(values.values()):
            parts.append(segment.format(**values))
    return SEGMENT_SEPARATOR.join(parts)[:max_chars]


def item_texts(items: list[dict], template: str, missing_text: str = "error", max_chars: int = 2000,
               source: str = "items") -> list[str]:
    """Texts for every item. Items with no text: error (default) or, with missing_text=id, their id."""
    check_text_settings(template, missing_text)
    texts = [render(item, template, max_chars) for item in items]
    empty = [i for i, t in enumerate(texts) if not t]
    if empty:
        first = items[empty[0]]["item_id"]
        if missing_text == "error":
            raise DataError(
                f"{source}: {len(empty)} of {len(items)} items have no text for template fields "
                f"{template_fields(template)} (first: item {first!r}); set data.missing_text=id to embed "
                "their ids instead"
            )
        import warnings

        warnings.warn(f"{source}: {len(empty)} of {len(items)} items have no text; using their ids", stacklevel=2)
        for i in empty:
            texts[i] = f"item {items[i].get('asin') or items[i]['item_id']}"
    return texts

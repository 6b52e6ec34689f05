"""Item text rendering (sidrec/data/text.py)."""

from __future__ import annotations

import pytest

from conftest import raises_one_line
from sidrec.config import DataConfig
from sidrec.data.text import item_texts, render
from sidrec.errors import ConfigError, DataError

TEMPLATE = DataConfig().text_template


def test_render_skips_segments_of_missing_fields_and_cleans_values():
    item = {
        "item_id": "1",
        "title": "Lip &amp;amp; Cheek\n  Tint",
        "categories": [["Beauty", "Makeup"], ["Beauty", "Makeup"], ["Sale"]],
        "price": 12.5,
    }
    assert render(item, TEMPLATE) == "Title: Lip & Cheek Tint | Categories: Beauty > Makeup; Sale | Price: 12.50"
    assert render(item, TEMPLATE, max_chars=10) == "Title: Lip"


def test_item_texts_errors_and_id_fallback():
    items = [{"item_id": "1", "title": "A"}, {"item_id": "2", "asin": "B2"}]
    with raises_one_line(ConfigError, "colour"):
        item_texts(items, "Title: {title} | Colour: {colour}")
    with raises_one_line(DataError, "1 of 2 items", "'2'", "data.missing_text=id"):
        item_texts(items, TEMPLATE)
    with pytest.warns(UserWarning, match="1 of 2 items"):
        assert item_texts(items, TEMPLATE, missing_text="id") == ["Title: A", "item B2"]
    with raises_one_line(ConfigError, "missing_text"):
        item_texts(items, TEMPLATE, missing_text="drop")

"""The reports' HTML kit: escaped cells, classed rows, inline images, one offline page."""

from __future__ import annotations

import re

import pytest

from braintumor.htmlkit import CSS, data_uri, escape, image, page, table


def test_tables_escape_every_cell_and_class_rows() -> None:
    html = table([["<b>", 1], ["a&b", 2.5]], header=["name", '"n"'], row_classes=["winner", ""])
    assert html == (
        "<table><tr><th>name</th><th>&quot;n&quot;</th></tr>"
        '<tr class="winner"><td>&lt;b&gt;</td><td>1</td></tr>'
        "<tr><td>a&amp;b</td><td>2.5</td></tr></table>"
    )
    assert table([["k", "v"]]) == "<table><tr><td>k</td><td>v</td></tr></table>"
    with pytest.raises(ValueError):
        table([["a"], ["b"]], row_classes=["winner"])  # one class per row


def test_images_are_inline_and_pages_self_contained() -> None:
    uri = data_uri(b"\x89PNG")
    assert uri == "data:image/png;base64,iVBORw=="
    assert (
        image(uri, alt='a "b"', title="t") == f'<img src="{uri}" alt="a &quot;b&quot;" title="t">'
    )
    text = page("Audit <1>", "<h1>x</h1>")
    assert text.startswith("<!DOCTYPE html>") and "<title>Audit &lt;1&gt;</title>" in text
    assert f"<style>{CSS}</style>" in text and "<h1>x</h1>" in text
    assert not re.search(r"(src|href)=\"(https?:)?//", text) and "<link" not in text
    assert escape(3) == "3"

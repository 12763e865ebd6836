"""The page's static files and first paint (no browser, no daemon; milliseconds): only the
folder's own files of the types the page serves are loaded, each with a content-hash
version; a page file missing from the folder (a wheel built without its package data) stops
the start; names in the server's HTML are escaped."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp import web

from gateway.web.page import ASSETS, STATIC_DIR, _lane_tile, add_page_routes, load_assets


def test_only_the_folder_s_own_page_files_are_served(tmp_path: Path) -> None:
    for name in ("page.js", "page.css", "icon.svg"):
        (tmp_path / name).write_text(f"/* {name} */")
    (tmp_path / "notes.txt").write_text("not a page file")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "other.js").write_text("not in the folder itself")
    app = web.Application()
    add_page_routes(app, tmp_path)
    assets = app[ASSETS]
    assert sorted(assets) == ["icon.svg", "page.css", "page.js"]
    assert assets["page.js"].content_type == "text/javascript"
    assert assets["page.js"].body == b"/* page.js */"
    (tmp_path / "page.js").write_text("/* a new release */")
    assert load_assets(tmp_path)["page.js"].version != assets["page.js"].version


def test_a_missing_page_file_stops_the_start(tmp_path: Path) -> None:
    (tmp_path / "page.css").write_text("")
    with pytest.raises(RuntimeError, match=r"missing from .*: page\.js, icon\.svg"):
        add_page_routes(web.Application(), tmp_path)


def test_the_shipped_folder_has_every_page_file() -> None:
    assert {"page.js", "page.css", "icon.svg"} <= set(load_assets(STATIC_DIR))


def test_a_lane_s_names_are_escaped_in_the_first_paint() -> None:
    # configured ids are plain identifiers today; the render escapes them all the same
    html = _lane_tile('<b onclick="alert(1)">', "entry&exit")
    assert "<b" not in html and 'onclick="' not in html
    assert "&lt;b onclick=&quot;alert(1)&quot;&gt;" in html
    assert "entry&amp;exit" in html

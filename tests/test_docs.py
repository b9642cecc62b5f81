"""The README and docs/: relative links resolve, the README's two commands exist, the licence note is there."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page):
    broken = []
    for target in LINK.findall(page.read_text()):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue  # a URL or an anchor on the same page
        path = (page.parent / target.split("#")[0]).resolve()
        if not path.exists():
            broken.append(target)
    assert not broken, f"{page.name}: links to missing files {broken}"


def test_readme_commands_are_make_targets():
    readme = (ROOT / "README.md").read_text()
    makefile = (ROOT / "Makefile").read_text()
    for target in ("study", "test"):
        assert f"make {target}" in readme, f"the README lost `make {target}`"
        assert re.search(rf"^{target}:", makefile, re.M), f"Makefile has no `{target}` target"


def test_readme_states_the_checkpoint_licence():
    readme = (ROOT / "README.md").read_text()
    notice = ROOT / "alloyflow" / "data" / "potentials" / "alloyflow-LiInSn" / "NOTICE.md"
    assert notice.exists() and "GPL-3.0" in notice.read_text()
    assert "GPL-3.0" in readme and "alloyflow-LiInSn" in readme

"""The public trial data of the reference-number tests lives in the repository, with its
sources, licences and checksums (tests/data/README.md), so a standalone clone runs them."""

from __future__ import annotations

import hashlib
import re

from tests.conftest import REFERENCE_DATA, REPO


def test_every_data_file_is_listed_with_source_licence_and_checksum() -> None:
    readme = (REFERENCE_DATA / "README.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| `([^`]+\.csv)` \| ([^|]+) \| ([^|]+) \| `([0-9a-f]{64})` \|$",
                      readme, re.MULTILINE)
    listed = {name for name, *_ in rows}
    assert listed == {p.name for p in REFERENCE_DATA.glob("*.csv")} and listed
    for name, source, licence, sha256 in rows:
        assert source.strip() and "GPL" in licence, name
        assert hashlib.sha256((REFERENCE_DATA / name).read_bytes()).hexdigest() == sha256, name
    assert "GNU GENERAL PUBLIC LICENSE" in (REFERENCE_DATA / "GPL-2.txt").read_text()


def test_no_test_reads_data_from_outside_the_repository() -> None:
    outside = ('"shared"', "parents[2]", "../shared")
    for test in (REPO / "tests").glob("*.py"):
        if test.name != "test_reference_data.py":
            text = test.read_text(encoding="utf-8")
            assert not [word for word in outside if word in text], test.name

"""The manifest as Echo's identity, taken again whenever the files change."""

from __future__ import annotations

from echo.brain.identity import IdentitySource


def test_an_edited_added_or_removed_declaration_is_taken_at_the_next_look(tmp_path):
    (tmp_path / "00_echo.txt").write_text("I am Echo.", encoding="utf-8")
    source = IdentitySource(tmp_path)
    assert source.current.declaration == "I am Echo." and source.refresh() is False  # nothing changed
    (tmp_path / "00_echo.txt").write_text("나는 에코, 기억하는 존재야.", encoding="utf-8")
    assert source.refresh() is True and source.current.declaration == "나는 에코, 기억하는 존재야."
    (tmp_path / "10_origin.txt").write_text("My origin is Minsu.", encoding="utf-8")
    assert source.refresh() and source.current.files == ("00_echo.txt", "10_origin.txt")
    (tmp_path / "10_origin.txt").unlink()
    assert source.refresh() and "Minsu" not in source.current.text


def test_a_broken_manifest_keeps_the_previous_identity_and_says_why(tmp_path):
    (tmp_path / "00_echo.txt").write_text("I am Echo.", encoding="utf-8")
    source = IdentitySource(tmp_path)
    (tmp_path / "00_echo.txt").write_bytes(b"\xff\xfe not utf-8")
    assert source.refresh() is False
    assert source.current.declaration == "I am Echo." and "is not UTF-8 text (fix: save it as UTF-8)" in source.error
    (tmp_path / "00_echo.txt").write_text("", encoding="utf-8")
    assert source.refresh() is False and "every declaration" in source.error
    assert source.status() == {"files": ["00_echo.txt"], "error": source.error}
    (tmp_path / "00_echo.txt").write_text("I am Echo, again.", encoding="utf-8")
    assert source.refresh() and source.error is None and source.current.declaration == "I am Echo, again."

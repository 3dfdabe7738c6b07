"""create_project's safety: every path stays inside the project; limits hold; no overwrite."""

import json
import os

import pytest

from echo.brain.projects import ProjectError, ProjectFile, ProjectSpec, parse_project, slugify, tree_listing, write_project
from echo.config import ProjectLimits

LIMITS = ProjectLimits(max_files=4, max_bytes=1000, max_file_bytes=600)


def spec(*files, name="Demo"):
    return ProjectSpec(name=name, description="A demo.", files=tuple(ProjectFile(p, c) for p, c in files))


def test_a_project_is_written_with_a_readme_and_a_tree(tmp_path):
    created = write_project(spec(("src/main.py", "print(1)\n"), ("docs/guide.md", "# Guide\n")), tmp_path, LIMITS)
    assert created.slug == "demo" and created.path == tmp_path / "demo"
    assert created.files == ("README.md", "docs/guide.md", "src/main.py")
    readme = (tmp_path / "demo" / "README.md").read_text(encoding="utf-8")
    assert readme.startswith("# Demo\n\nA demo.")
    assert "docs/\n    guide.md\nsrc/\n    main.py" in readme
    assert (tmp_path / "demo" / "src" / "main.py").read_text() == "print(1)\n"


def test_a_readme_from_the_model_is_kept_and_gets_the_tree(tmp_path):
    write_project(spec(("README.md", "# Mine\n"), ("a.txt", "a")), tmp_path, LIMITS)
    readme = (tmp_path / "demo" / "README.md").read_text(encoding="utf-8")
    assert readme.startswith("# Mine\n") and "a.txt" in readme


@pytest.mark.parametrize(
    "path, words",
    [
        ("/etc/passwd", "absolute"),
        ("../outside.txt", "'..'"),
        ("src/../../outside.txt", "'..'"),
        ("C:/Windows/win.ini", "absolute"),
        ("C:evil.txt", "absolute"),
        ("src\\main.py", "not allowed"),
        ("CON", "reserved"),
        ("src/nul.txt", "reserved"),
        ("lpt1.md", "reserved"),
        ("a\x00b", "not allowed"),
        ("a\nb", "not allowed"),
        ("", "empty"),
        (" lead.txt", "spaces"),
        ("trailing.", "ending in a space or dot"),
        ("a//b.txt", "'' as a name"),
        ("dir/", "'' as a name"),
        ("./x", "'.'"),
        ("a/" * 20 + "x", "too deep"),
    ],
)
def test_unsafe_paths_are_refused_before_anything_is_written(tmp_path, path, words):
    with pytest.raises(ProjectError) as caught:
        write_project(spec(("ok.txt", "fine"), (path, "bad")), tmp_path / "projects", LIMITS)
    assert words in str(caught.value)
    assert not (tmp_path / "projects").exists()


def test_limits_on_files_and_bytes(tmp_path):
    with pytest.raises(ProjectError, match="5 files; the limit is 4"):
        write_project(spec(*[(f"f{i}.txt", "x") for i in range(5)]), tmp_path, LIMITS)
    with pytest.raises(ProjectError, match="the limit is 600"):
        write_project(spec(("big.txt", "x" * 601)), tmp_path, LIMITS)
    with pytest.raises(ProjectError, match="1100 bytes; the limit is 1000"):
        write_project(spec(("a.txt", "x" * 550), ("b.txt", "x" * 550)), tmp_path, LIMITS)
    with pytest.raises(ProjectError, match="both a file and a folder"):
        write_project(spec(("a", "x"), ("a/b.txt", "y")), tmp_path, LIMITS)
    with pytest.raises(ProjectError, match="appears twice"):
        write_project(spec(("a.txt", "x"), ("A.txt", "y")), tmp_path, LIMITS)
    assert list(tmp_path.iterdir()) == []


def test_an_existing_project_is_never_overwritten(tmp_path):
    write_project(spec(("a.txt", "first")), tmp_path, LIMITS)
    with pytest.raises(ProjectError) as caught:
        write_project(spec(("a.txt", "second")), tmp_path, LIMITS)
    assert caught.value.status == 409
    assert (tmp_path / "demo" / "a.txt").read_text() == "first"
    assert [p.name for p in tmp_path.iterdir()] == ["demo"]  # no staging folder left behind


def test_a_link_in_place_of_the_project_is_not_followed(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    projects = tmp_path / "projects"
    projects.mkdir()
    os.symlink(outside, projects / "demo")
    with pytest.raises(ProjectError, match="already exists"):
        write_project(spec(("a.txt", "x")), projects, LIMITS)
    assert list(outside.iterdir()) == []


def test_slugs_are_safe_folder_names():
    assert slugify("Todo App!") == "todo-app"
    assert slugify("할 일 관리") == "할-일-관리"
    assert slugify("../../etc") == "etc"
    assert slugify("CON") == "project-con"
    assert slugify("///") == "project"


def test_parse_project_names_what_is_wrong():
    with pytest.raises(ProjectError, match="not complete JSON"):
        parse_project('{"name": "x", "files": [')
    with pytest.raises(ProjectError, match="no name"):
        parse_project(json.dumps({"name": " ", "files": [{"path": "a", "content": ""}]}))
    with pytest.raises(ProjectError, match="lists no files"):
        parse_project(json.dumps({"name": "x", "files": []}))
    with pytest.raises(ProjectError, match=r"files\[0\]"):
        parse_project(json.dumps({"name": "x", "files": [{"path": 3, "content": ""}]}))
    assert parse_project(json.dumps({"name": "x", "description": "d", "files": [{"path": "a", "content": "b"}]})).files[0].path == "a"


def test_tree_listing_shows_each_folder_once():
    assert tree_listing(["b/c/d.txt", "a.txt", "b/e.txt"]) == "a.txt\nb/\n    c/\n        d.txt\n    e.txt"

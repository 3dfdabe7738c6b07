"""`doctor` and `package`: what a pod needs, checked and packed."""

from __future__ import annotations

import os
import zipfile

import yaml
from click.testing import CliRunner

from bench.common import free_port
from echo.config import DEFAULT_CONFIG, REPO_ROOT
from echo.ops.doctor import diagnose
from echo.ops.package import build_package, package_files
from echo_cli import main


def config_file(tmp_path, **overrides) -> str:
    data = yaml.safe_load(DEFAULT_CONFIG.read_text(encoding="utf-8"))
    data.update({"memory_dir": str(tmp_path / "memory"), "manifest_dir": str(REPO_ROOT / "manifest"), "port": free_port(), **overrides})
    path = tmp_path / "echo.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return str(path)


def levels(findings) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for f in findings:
        out.setdefault(f.level, []).append(f.what + " | " + f.fix)
    return out


def test_doctor_passes_a_healthy_tree_and_never_shows_the_token(tmp_path, monkeypatch):
    monkeypatch.setenv("ECHO_ORIGIN_TOKEN", "doctor-secret-123")
    (tmp_path / "memory" / "day0101" / "origin").mkdir(parents=True)
    (tmp_path / "memory" / "day0101" / "origin" / "part1.txt").write_text("나의 말:\n안녕\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["doctor", "--config", config_file(tmp_path), "--metrics-port", str(free_port())])
    assert "0 errors" in result.output and "Echo can start" in result.output and result.exit_code == 0, result.output
    assert "memory: 1 parts" in result.output and "ECHO_ORIGIN_TOKEN is set" in result.output
    assert "doctor-secret-123" not in result.output


def test_doctor_names_each_problem_with_its_fix(tmp_path, monkeypatch):
    monkeypatch.delenv("ECHO_ORIGIN_TOKEN", raising=False)
    day = tmp_path / "memory" / "day0101" / "origin"
    day.mkdir(parents=True)
    (day / "part1.txt").write_bytes("나의 말:\n안녕\n".encode("cp949"))
    (day / "part01.txt").write_text("x\n", encoding="utf-8")
    (tmp_path / "memory" / "notes").mkdir()
    empty_manifest = tmp_path / "manifest"
    empty_manifest.mkdir()
    circuits = yaml.safe_load(DEFAULT_CONFIG.read_text(encoding="utf-8"))["circuits"]
    circuits["creation"]["model"] = str(tmp_path / "missing.gguf")
    found = levels(diagnose(REPO_ROOT, config_file(tmp_path, circuits=circuits, manifest_dir=str(empty_manifest))))
    errors, warnings = found["error"], found["warn"]
    assert any("circuit creation" in e and "missing.gguf" in e and "fix:" in e for e in errors)
    assert any("day0101/origin/part1.txt is not UTF-8" in w and "iconv" in w for w in warnings)
    assert any("part01.txt is not named partN.txt" in w for w in warnings)
    assert any("notes is not a dayMMDD folder" in w for w in warnings)
    assert any("manifest" in w and "no *.txt declarations" in w for w in warnings)
    assert any("ECHO_ORIGIN_TOKEN is not set" in w for w in warnings)


def make_tree(root):
    files = {
        "echo/app.py": "print('echo')\n",
        "echo/__pycache__/app.cpython-311.pyc": "x",
        "configs/a40.yaml": "port: 8000\n",
        "manifest/00_echo.txt": "I am Echo.\n",
        "serve_app.py": "",
        "README.md": "# Echo\n",
        "runpod_launcher.sh": "#!/bin/bash\n",
        ".env": "ECHO_ORIGIN_TOKEN=secret\n",
        ".git/HEAD": "ref\n",
        ".gitignore": "memory/*\n",
        "tests/test_x.py": "",
        "NOTES.md": "dev notes\n",
        "memory/day0101/origin/part1.txt": "나의 말:\n비밀\n",
        "memory_backup/day0101/origin/part1.txt": "나의 말:\n비밀\n",
        "memory_facts/facts.jsonl": '{"text": "비밀 fact"}\n',
        "memory/facts.jsonl": '{"text": "비밀 fact"}\n',
        "origin/projects/p/README.md": "x",
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")
    (root / "runpod_launcher.sh").chmod(0o755)


def test_the_package_holds_the_application_and_nothing_private(tmp_path):
    make_tree(tmp_path / "tree")
    names = package_files(tmp_path / "tree")
    assert names == ["README.md", "configs/a40.yaml", "echo/app.py", "manifest/00_echo.txt", "memory/", "runpod_launcher.sh", "serve_app.py"]
    assert "memory/day0101/origin/part1.txt" in package_files(tmp_path / "tree", with_memory=True)
    assert not any("facts" in n for n in package_files(tmp_path / "tree", with_memory=True))  # what Echo knows never travels
    packed = build_package(tmp_path / "tree", tmp_path / "echo.zip")
    with zipfile.ZipFile(packed.path) as archive:
        launcher = archive.getinfo("echo/runpod_launcher.sh")
        assert (launcher.external_attr >> 16) & 0o777 == 0o755 and packed.files == 6
        assert "비밀" not in "".join(archive.read(n).decode("utf-8", "replace") for n in archive.namelist())


def test_the_same_tree_gives_the_same_bytes(tmp_path):
    make_tree(tmp_path / "tree")
    first = build_package(tmp_path / "tree", tmp_path / "a.zip").path.read_bytes()
    (tmp_path / "tree" / "echo" / "app.py").touch()  # a new mtime changes nothing
    assert build_package(tmp_path / "tree", tmp_path / "b.zip").path.read_bytes() == first


def test_the_real_package_unpacks_into_a_tree_the_doctor_accepts(tmp_path):
    out = tmp_path / "echo.zip"
    result = CliRunner().invoke(main, ["package", "--out", str(out)])
    assert result.exit_code == 0 and "files" in result.output
    with zipfile.ZipFile(out) as archive:
        names = archive.namelist()
        archive.extractall(tmp_path / "pod")
    assert not any(n.startswith(("echo/tests/", "echo/.git", "echo/bench/")) or "__pycache__" in n or n.endswith(".pyc") for n in names)
    assert "echo/memory/" in names and not any(n.startswith("echo/memory/") and n != "echo/memory/" for n in names)
    assert {"echo/runpod_launcher.sh", "echo/ray_cluster.yaml", "echo/configs/serve_a40.yaml", "echo/pyproject.toml"} <= set(names)
    assert (
        os.access(tmp_path / "pod" / "echo" / "runpod_launcher.sh", os.X_OK)
        or zipfile.ZipFile(out).getinfo("echo/runpod_launcher.sh").external_attr >> 16 & 0o111
    )
    findings = diagnose(tmp_path / "pod" / "echo", config_file(tmp_path / "pod"))
    assert [f.what for f in findings if f.level == "error"] == []

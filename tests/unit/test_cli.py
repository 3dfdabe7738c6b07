"""The echo-server command line, for the commands that need no Ray."""

import yaml
from click.testing import CliRunner

from core.config import DEFAULT_CONFIG
from core.memory_store import append_exchange, exchange_lines
from echo_cli import main
from tests.unit.test_memory_store import NOW


def config_in(tmp_path):
    data = yaml.safe_load(DEFAULT_CONFIG.read_text(encoding="utf-8"))
    data.update(memory_dir=str(tmp_path / "memory"), backup_dir=str(tmp_path / "memory_backup"))
    path = tmp_path / "echo.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return str(path)


def test_help_lists_the_commands():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0 and "serve" in result.output and "restore" in result.output


def test_restore_brings_back_a_lost_part(tmp_path):
    append_exchange(tmp_path / "memory", "u", exchange_lines("q", "a"), NOW, "UTC", backup_dir=tmp_path / "memory_backup")
    (tmp_path / "memory" / "day1124" / "u" / "part1.txt").unlink()
    result = CliRunner().invoke(main, ["restore", "--config", config_in(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "restored   day1124/u/part1.txt" in result.output and "1 restored" in result.output
    assert (tmp_path / "memory" / "day1124" / "u" / "part1.txt").read_text(encoding="utf-8").startswith("나의 말:\nq\n")


def test_restore_without_a_backup_or_with_a_bad_config_says_what_to_do(tmp_path):
    result = CliRunner().invoke(main, ["restore", "--config", config_in(tmp_path)])
    assert result.exit_code == 1 and "no backup at" in result.output and "Traceback" not in result.output
    result = CliRunner().invoke(main, ["restore", "--config", str(tmp_path / "missing.yaml")])
    assert result.exit_code == 1 and "does not exist" in result.output

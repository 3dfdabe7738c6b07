"""Config files: the shipped ones load, wrong values fail naming field, value and fix."""

from pathlib import Path

import pytest
import yaml

from echo.config import (
    DEFAULT_CONFIG,
    REPO_ROOT,
    ConfigError,
    config_path,
    fit_to_hardware,
    load_config,
    parse_config,
)
from echo.llm.models import check_models, embedded_model_path
from tests.fakes import make_config

A40 = REPO_ROOT / "configs" / "a40.yaml"


def test_default_config_runs_all_three_circuits_on_the_embedded_model_on_the_cpu():
    config = load_config(DEFAULT_CONFIG)
    assert list(config.circuits) == ["emotion", "creation", "self"]
    models = check_models(config)
    assert set(models.values()) == {embedded_model_path()}
    assert embedded_model_path().name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert all(c.num_gpus == 0 for c in config.circuits.values())
    assert len({c.role_prompt for c in config.circuits.values()}) == 3  # each its own angle
    assert config.host == "127.0.0.1"


def test_a40_config_names_the_three_models_fully_on_the_gpu_at_a_third_each():
    config = load_config(A40)
    models = {n: Path(c.model).name for n, c in config.circuits.items()}
    assert models == {
        "emotion": "mixtral-8x7b-instruct-v0.1.Q4_K_M.gguf",
        "creation": "deepseek-coder-6.7b-instruct.Q4_K_M.gguf",
        "self": "Meta-Llama-3-8B-Instruct.Q4_K_M.gguf",
    }
    for circuit in config.circuits.values():
        assert circuit.model.startswith("/workspace/llm_models/")
        assert circuit.n_gpu_layers == -1 and circuit.num_gpus == 0.33


def test_a_missing_model_file_names_the_path_it_looked_for():
    with pytest.raises(ConfigError) as caught:
        check_models(load_config(A40))
    message = str(caught.value)
    assert "/workspace/llm_models/mixtral-8x7b-instruct-v0.1.Q4_K_M.gguf" in message
    assert "circuits.emotion.model" in message and "circuits.self.model" in message and "fix:" in message


def test_a_file_that_is_not_gguf_is_refused(tmp_path):
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"<html>not a model</html>")
    data = yaml.safe_load(DEFAULT_CONFIG.read_text())
    data["circuits"]["self"]["model"] = str(fake)
    with pytest.raises(ConfigError, match="is not a GGUF file"):
        check_models(parse_config(data))


@pytest.mark.parametrize(
    "change, words",
    [
        (lambda d: d["circuits"]["emotion"].update(n_ctx=-5), ["circuits.emotion.n_ctx = -5", "greater than or equal to 128", "fix:"]),
        (lambda d: d["circuits"]["self"].update(num_gpus="lots"), ["circuits.self.num_gpus = 'lots'", "fix:"]),
        (lambda d: d.update(merge="average"), ["merge = 'average'", "'synthesize' or 'concat'"]),
        (lambda d: d["circuits"].pop("creation"), ["circuits", "missing: creation"]),
        (lambda d: d["circuits"].update(extra=d["circuits"]["self"]), ["unknown: extra"]),
        (lambda d: d["circuits"]["self"].update(temprature=0.5), ["circuits.self.temprature: unknown setting"]),
        (lambda d: d.update(timezone="Mars/Base"), ["timezone = 'Mars/Base'", "IANA"]),
        (lambda d: d.update(port=70000), ["port = 70000"]),
        (lambda d: d["circuits"]["self"].pop("role_prompt"), ["circuits.self.role_prompt: is required"]),
    ],
)
def test_wrong_values_name_the_field_the_value_and_the_fix(change, words):
    data = yaml.safe_load(DEFAULT_CONFIG.read_text())
    change(data)
    with pytest.raises(ConfigError) as caught:
        parse_config(data, source="test.yaml")
    for word in words:
        assert word in str(caught.value)


def test_unreadable_or_malformed_config_files_are_clear(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("circuits: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    bad.write_text("- a list")
    with pytest.raises(ConfigError, match="must be a YAML mapping"):
        load_config(bad)


def test_config_is_chosen_by_flag_then_environment_then_default(monkeypatch):
    monkeypatch.delenv("ECHO_CONFIG", raising=False)
    assert config_path(None) == DEFAULT_CONFIG
    monkeypatch.setenv("ECHO_CONFIG", str(A40))
    assert config_path(None) == A40
    assert config_path("other.yaml") == Path("other.yaml")


def test_relative_data_paths_resolve_against_echo_home(monkeypatch, tmp_path):
    monkeypatch.setenv("ECHO_HOME", str(tmp_path))
    config = load_config(DEFAULT_CONFIG)
    assert config.memory_dir == tmp_path / "memory"
    assert config.projects_dir == tmp_path / "origin" / "projects"


def test_without_a_gpu_fractions_resolve_to_zero_and_say_so():
    config = load_config(A40)
    fitted, notes = fit_to_hardware(config, gpus_available=0)
    assert all(c.num_gpus == 0 and c.n_gpu_layers == 0 for c in fitted.circuits.values())
    assert "no GPU found" in notes[0] and "emotion, creation, self" in notes[0]
    assert notes[1].startswith("no GPU found: memory embeddings run on the CPU") and fitted.recall.embedding_num_gpus == 0
    same, notes = fit_to_hardware(config, gpus_available=1)
    assert same == config and notes == []


def test_a_gpu_embedding_model_falls_back_to_the_cpu_without_a_gpu(tmp_path):
    config = make_config(tmp_path, recall={"embedding_model": "/models/bge-m3.gguf", "embedding_n_gpu_layers": -1, "embedding_num_gpus": 0.05})
    fitted, notes = fit_to_hardware(config, gpus_available=0)
    assert fitted.recall.embedding_num_gpus == 0 and fitted.recall.embedding_n_gpu_layers == 0
    assert notes == ["no GPU found: memory embeddings run on the CPU (recall.embedding_num_gpus and embedding_n_gpu_layers set to 0)"]
    assert fit_to_hardware(config, gpus_available=1)[0] == config


def test_markers_need_a_user_and_an_echo_speaker(tmp_path):
    with pytest.raises(ConfigError, match="markers = .*needs a marker for the speaker 'user' and one for 'echo'"):
        make_config(tmp_path, markers={"Q:": "user", "A:": "assistant"})
    assert make_config(tmp_path, markers={"Q:": "user", "A:": "echo"}).markers == {"Q:": "user", "A:": "echo"}


def test_the_index_follows_the_memory_unless_it_is_set(tmp_path):
    assert make_config(tmp_path).index_dir == (tmp_path / "memory_index").resolve()
    assert make_config(tmp_path, memory_dir=str(tmp_path / "talks")).index_dir == (tmp_path / "talks_index").resolve()
    assert make_config(tmp_path, index_dir=str(tmp_path / "idx")).index_dir == (tmp_path / "idx").resolve()


def test_every_setting_is_described_and_the_reference_page_is_current():
    from echo.ops.config_docs import REFERENCE, reference, undescribed

    assert undescribed() == []
    assert REFERENCE.read_text(encoding="utf-8") == reference(), "docs/configuration.md is stale: run `make docs`"

"""`plan` from GGUF headers: real shapes written by the tests (no weights), and the embedded model."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from echo.config import load_config
from echo.llm.models import embedded_model_path
from echo.llm.plan import GiB, PlanError, kv_cache_bytes, plan, plan_circuit, read_shape, render
from echo_cli import main
from tests.fakes import make_config
from tests.gguf_fakes import DEEPSEEK_CODER_6_7B, LLAMA_3_8B, MIXTRAL_8X7B, write_fake_gguf

A40_BYTES = 48 * 10**9


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("llm_models")
    shapes = {"emotion": MIXTRAL_8X7B, "creation": DEEPSEEK_CODER_6_7B, "self": LLAMA_3_8B}
    paths, sizes = {}, {}
    for circuit, shape in shapes.items():
        paths[circuit] = folder / f"{circuit}.Q4_K_M.gguf"
        sizes[circuit] = write_fake_gguf(paths[circuit], shape)
    return paths, sizes


def a40(tmp_path, paths, n_ctx=4096, **overrides):
    circuit = {"n_gpu_layers": -1, "num_gpus": 0.33, "n_ctx": n_ctx, "role_prompt": "r"}
    circuits = {name: {**circuit, "model": str(path)} for name, path in paths.items()}
    for name, extra in overrides.items():
        circuits[name].update(extra)
    return make_config(tmp_path, circuits=circuits)


def test_weights_are_the_tensor_bytes_and_the_kv_cache_follows_the_formula(models, tmp_path):
    paths, sizes = models
    shape = read_shape(paths["emotion"])
    assert (shape.architecture, shape.layers, shape.kv_heads, shape.head_size, shape.experts) == ("llama", 32, 8, 128, 8)
    config = a40(tmp_path, paths)
    for name in ("emotion", "creation", "self"):
        shape = read_shape(paths[name])
        result = plan_circuit(name, config.circuits[name], shape, paths[name].name)
        assert result.weights == sum(size for tensor, size in sizes[name].items() if tensor != "token_embd.weight")
        assert result.kv_cache == 2 * 32 * shape.kv_heads * 128 * 4096 * 2
    # deepseek-coder has no grouped-query attention: four times Llama-3's KV cache.
    assert kv_cache_bytes(read_shape(paths["creation"]), 32, 4096) == 4 * kv_cache_bytes(read_shape(paths["self"]), 32, 4096)


def test_the_three_a40_models_fit_at_4k_and_mixtral_is_flagged_for_its_share(models, tmp_path):
    result = plan(a40(tmp_path, models[0]), A40_BYTES)
    assert result.fits and 35 * GiB < result.total < A40_BYTES
    mixtral, *others = result.warnings
    assert mixtral.startswith("emotion: needs 5") and "asks Ray for num_gpus 0.33" in mixtral and "could pack more" in mixtral
    assert [w.split(":")[0] for w in others] == ["creation", "self"] and all("reserves 0.33" in w for w in others)
    table = render(result)
    assert "fits" in table and "emotion.Q4_K_M.gguf" in table


def test_a_config_that_cannot_fit_is_refused_by_the_cli(models, tmp_path):
    too_long = a40(tmp_path, models[0], n_ctx=32768)
    result = plan(too_long, A40_BYTES)
    assert not result.fits and "DOES NOT FIT" in render(result)
    config_file = tmp_path / "big.yaml"
    import yaml

    config_file.write_text(yaml.safe_dump(too_long.model_dump(mode="json"), allow_unicode=True), encoding="utf-8")
    refused = CliRunner().invoke(main, ["plan", "--config", str(config_file), "--gpu-gb", "48"])
    assert refused.exit_code == 1 and "DOES NOT FIT" in refused.output
    roomy = CliRunner().invoke(main, ["plan", "--config", str(config_file), "--gpu-gb", "141"])
    assert roomy.exit_code == 0 and "fits" in roomy.output


def test_partial_offload_counts_only_the_last_layers(models, tmp_path):
    paths, sizes = models
    config = a40(tmp_path, paths, self={"n_gpu_layers": 8})
    result = plan_circuit("self", config.circuits["self"], read_shape(paths["self"]), "x")
    expected = sum(size for tensor, size in sizes["self"].items() if tensor.startswith("blk.") and int(tensor.split(".")[1]) >= 24)
    assert result.gpu_layers == 8 and result.weights == expected
    cpu = a40(tmp_path, paths, self={"n_gpu_layers": 0, "num_gpus": 0})
    assert plan_circuit("self", cpu.circuits["self"], read_shape(paths["self"]), "x").total == 0


def test_the_embedded_model_is_planned_from_its_real_header(tmp_path):
    shape = read_shape(embedded_model_path())
    assert (shape.layers, shape.heads, shape.kv_heads, shape.embedding, shape.vocab) == (30, 9, 3, 576, 49152)
    assert abs(shape.weight_bytes - embedded_model_path().stat().st_size) < 2 * 2**20  # the file is its tensors plus a header
    config = load_config()
    result = plan(config, A40_BYTES)
    assert [c.gpu_layers for c in result.circuits] == [0, 0, 0] and result.fits  # the default runs on the CPU


def test_a_missing_or_corrupt_model_is_a_clear_error(tmp_path):
    with pytest.raises(PlanError, match="no model file at .*fix: put the GGUF there"):
        read_shape(tmp_path / "missing.gguf")
    (tmp_path / "bad.gguf").write_bytes(b"GGUF\x03\x00\x00\x00 cut off")
    with pytest.raises(PlanError, match="is not a readable GGUF file"):
        read_shape(tmp_path / "bad.gguf")
    (tmp_path / "text.gguf").write_text("hello", encoding="utf-8")
    with pytest.raises(PlanError, match="is not a GGUF file"):
        read_shape(tmp_path / "text.gguf")


def test_every_slot_holds_its_own_kv_cache_and_a_plan_that_does_not_fit_says_how_many_slots_would(models, tmp_path):
    paths, _ = models
    one = plan(a40(tmp_path, paths), A40_BYTES)
    four = plan(a40(tmp_path, paths, **{n: {"n_parallel": 4} for n in paths}), A40_BYTES)
    for single, parallel in zip(one.circuits, four.circuits):
        assert parallel.slots == 4 and parallel.kv_cache == 4 * single.kv_cache and parallel.weights == single.weights
    assert not four.fits and "DOES NOT FIT" in render(four)
    # deepseek-coder's slots are the largest (no grouped-query attention): it gives up slots first.
    assert four.warnings[0] == "with fewer slots it fits: circuits.emotion.n_parallel 4, circuits.creation.n_parallel 2, circuits.self.n_parallel 4"


def test_the_a40_config_fits_with_its_slots(models, tmp_path):
    import yaml

    from echo.config import REPO_ROOT, parse_config

    data = yaml.safe_load((REPO_ROOT / "configs" / "a40.yaml").read_text(encoding="utf-8"))
    for name, path in models[0].items():
        data["circuits"][name]["model"] = str(path)
    result = plan(parse_config(data, base_dir=tmp_path), A40_BYTES)
    assert [c.slots for c in result.circuits] == [4, 2, 4] and result.fits


def test_plan_estimates_the_first_distillation_from_the_memory_scaled_to_the_lines_asked(models, tmp_path):
    import yaml

    from echo.config import REPO_ROOT, parse_config
    from echo.ops.distill_plan import SOURCE, estimate
    from tests.samples import write

    for n in range(1, 4):
        write(tmp_path / "memory", f"day0301/origin/part{n}.txt", "".join(f"나의 말:\nI went hiking on day {i}.\nChatGPT의 말:\nNice!\n" for i in range(20)))
    data = yaml.safe_load((REPO_ROOT / "configs" / "a40.yaml").read_text(encoding="utf-8"))
    for name, path in models[0].items():
        data["circuits"][name]["model"] = str(path)
    data["memory_dir"] = str(tmp_path / "memory")
    config = parse_config(data, base_dir=tmp_path)
    own, scaled = estimate(config, config.memory_dir), estimate(config, config.memory_dir, 300_000)
    assert own.lines == own.measured_lines == 240 and own.windows == 3 * 4  # 40 turns a part, 12 a window, exchanges whole
    assert scaled.windows == round(own.windows * 300_000 / 240) and scaled.prompt_tokens > own.prompt_tokens * 1000
    assert scaled.slots == 4 and scaled.batched_s < scaled.serial_s
    config_file = tmp_path / "a40.yaml"
    config_file.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    printed = CliRunner().invoke(main, ["plan", "--config", str(config_file), "--lines", "300000"])
    assert printed.exit_code == 0, printed.output
    line = next(text for text in printed.output.splitlines() if text.startswith("distill:"))
    assert "300,000 lines" in line and f"{scaled.windows:,} windows" in line and "A40 48GB" in line and SOURCE in line

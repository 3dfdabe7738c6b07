"""`plan`'s estimate of the first distillation of the memory: its windows and tokens, read from
the memory itself (scaled to `--lines` when asked), over published speeds of the GPU.

Tokens are counted as the distiller counts them (echo.memory.facts.prompt_tokens, which never
falls short of what a model reads), so the prompt side is an upper bound. Generation is taken
at ASSUMED_GENERATED tokens a window. Two times are printed: the slots generating together at
one slot's speed each (decoding a few sequences on a GPU is bound by reading the weights once
a step, so it costs about what one does), and at one slot's speed in all (the bound if they
did not batch at all).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from echo.config import EchoConfig
from echo.memory.distill import messages_for, part_paths, room, windows_of
from echo.memory.facts import PartLines, prompt_tokens

# Published llama.cpp speeds, tokens/s, one stream. The A40 row of XiongjieDai's RunPod
# benchmarks has generation for Llama 3 8B Q4_K_M, not prompt processing: that is the RTX
# A6000's (the same GA102 chip) for Llama 2 7B Q4_0.
SOURCE = "github.com/XiongjieDai/GPU-Benchmarks-on-LLM-Inference (llama.cpp on RunPod, May 2024)"
SPEEDS = {
    "a40": {"gpu": "A40 48GB", "prompt_per_s": 2979.12, "generate_per_s": 88.95, "model": "8B Q4_K_M generation, 7B Q4_0 prompt (RTX A6000)"},
}
ASSUMED_GENERATED = 160  # tokens a window's answer takes: about three facts of the schema's JSON


@dataclass(frozen=True)
class DistillEstimate:
    lines: int  # of the memory estimated
    measured_lines: int  # of the memory read to measure it
    windows: int
    prompt_tokens: int
    generated_tokens: int
    slots: int
    batched_s: float
    serial_s: float
    gpu: str
    speeds: dict


def measure(config: EchoConfig, memory_dir: Path) -> tuple[int, int, int]:
    """(lines, windows, prompt tokens) of the memory as the distiller would read it, no facts known."""
    d = config.distill
    budget, known = room(config.circuits[d.circuit].n_ctx, d.max_tokens)
    parts = PartLines(memory_dir)
    lines = windows = tokens = 0
    for path in part_paths(memory_dir):
        part = parts.lines(path) or []
        lines += len(part)
        for window in windows_of(path, part, config.markers, d.window_turns, budget):
            windows += 1
            tokens += sum(prompt_tokens(m["content"]) for m in messages_for(window, [])) + known // 2  # the facts known, once there are some
    return lines, windows, tokens


def estimate(config: EchoConfig, memory_dir: Path, lines: int | None = None, gpu: str = "a40") -> DistillEstimate | None:
    """The first distillation of memory_dir (or of `lines` lines like it); None without parts."""
    measured, windows, tokens = measure(config, memory_dir)
    if not measured or not windows:
        return None
    scale = (lines or measured) / measured
    speeds = SPEEDS[gpu]
    windows_n, prompt_n = round(windows * scale), round(tokens * scale)
    generated_n = windows_n * ASSUMED_GENERATED
    circuit = config.circuits[config.distill.circuit]
    slots = config.distill.slots or circuit.n_parallel
    prompt_s = prompt_n / speeds["prompt_per_s"]
    return DistillEstimate(
        lines=lines or measured,
        measured_lines=measured,
        windows=windows_n,
        prompt_tokens=prompt_n,
        generated_tokens=generated_n,
        slots=slots,
        batched_s=prompt_s + generated_n / (speeds["generate_per_s"] * slots),
        serial_s=prompt_s + generated_n / speeds["generate_per_s"],
        gpu=speeds["gpu"],
        speeds=speeds,
    )


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min"


def render_estimate(config: EchoConfig, e: DistillEstimate) -> str:
    circuit = config.circuits[config.distill.circuit]
    scaled = f" (measured on the {e.measured_lines:,} lines of the memory, scaled)" if e.lines != e.measured_lines else ""
    return (
        f"distill: the first distillation of {e.lines:,} lines{scaled}: {e.windows:,} windows, "
        f"{e.prompt_tokens:,} prompt tokens and about {e.generated_tokens:,} generated ({ASSUMED_GENERATED} a window) "
        f"through the {config.distill.circuit} circuit ({Path(circuit.model).name}, {e.slots} slots): "
        f"about {_hours(e.batched_s)} on the {e.gpu} ({_hours(e.serial_s)} if its slots did not batch), "
        f"at {e.speeds['prompt_per_s']:,.0f} prompt and {e.speeds['generate_per_s']:.1f} generated tokens/s "
        f"({e.speeds['model']}; source: {SOURCE})"
    )

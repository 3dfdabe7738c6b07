"""`plan`: will the three circuits fit on the GPU? Answered from the GGUF headers alone.

The gguf package (llama.cpp's own reader) maps the file and reads only its header: the
architecture, the shapes, and every tensor's type and size, never the weights. Per circuit:

  weights   the tensors of the offloaded layers (with -1 every block and the output
            layer; llama.cpp keeps the token embeddings in CPU memory)
  KV cache  2 (K and V) x offloaded layers x KV heads x head size x context x 2 bytes (f16,
            llama.cpp's default cache type), for every slot (n_parallel): each slot holds
            n_ctx tokens of its own
  compute   llama.cpp's work buffers for one 512-token batch: the logits (vocab x batch x
            4 bytes), attention scores (heads x batch x context x 4) and activations
            (embedding x batch x 4 x 8)
  overhead  the CUDA context of the process that serves the circuit (about 0.5 GiB)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from echo.config import CircuitConfig, EchoConfig
from echo.llm.models import resolve_model_path

GiB = 1024**3
BATCH = 512
CUDA_CONTEXT_BYTES = GiB // 2
KV_BYTES = 2  # f16
_BLOCK = re.compile(r"^blk\.(\d+)\.")


class PlanError(ValueError):
    """A model file the plan cannot read, worded for the person who has to fix it."""


@dataclass(frozen=True)
class ModelShape:
    architecture: str
    layers: int
    heads: int
    kv_heads: int
    embedding: int
    head_size: int
    vocab: int
    experts: int
    context_length: int
    tensors: tuple[tuple[str, str, int], ...]  # (name, type, bytes)

    @property
    def weight_bytes(self) -> int:
        return sum(size for _, _, size in self.tensors)


def _field(reader, key: str, default=None):
    field = reader.fields.get(key)
    if field is None:
        return default
    value = field.contents()
    return value


def read_shape(path: Path) -> ModelShape:
    """The model's shape and tensor sizes from its GGUF header."""
    from gguf import GGUFReader

    if not path.is_file():
        raise PlanError(f"no model file at {path} (fix: put the GGUF there, or change the circuit's model in the config)")
    try:
        with path.open("rb") as handle:
            if handle.read(4) != b"GGUF":
                raise PlanError(f"{path} is not a GGUF file (fix: use a llama.cpp .gguf model)")
        reader = GGUFReader(str(path))
    except PlanError:
        raise
    except Exception as exc:  # gguf's own reasons: cut off, bad version, bad counts
        raise PlanError(f"{path} is not a readable GGUF file ({type(exc).__name__}: {exc}) (fix: download it again)") from None
    arch = _field(reader, "general.architecture")
    if not arch:
        raise PlanError(f"{path} has no general.architecture in its header (fix: use a llama.cpp .gguf model)")
    layers = int(_field(reader, f"{arch}.block_count", 0))
    heads = int(_field(reader, f"{arch}.attention.head_count", 0))
    embedding = int(_field(reader, f"{arch}.embedding_length", 0))
    if not (layers and heads and embedding):
        raise PlanError(f"{path}: the header lacks {arch}.block_count, attention.head_count or embedding_length (fix: download it again)")
    tensors = tuple((t.name, t.tensor_type.name, int(t.n_bytes)) for t in reader.tensors)
    vocab = _field(reader, f"{arch}.vocab_size") or next((int(max(t.shape)) for t in reader.tensors if t.name == "token_embd.weight"), 0)
    return ModelShape(
        architecture=arch,
        layers=layers,
        heads=heads,
        kv_heads=int(_field(reader, f"{arch}.attention.head_count_kv", heads)),
        embedding=embedding,
        head_size=int(_field(reader, f"{arch}.attention.key_length", embedding // heads)),
        vocab=int(vocab),
        experts=int(_field(reader, f"{arch}.expert_count", 0)),
        context_length=int(_field(reader, f"{arch}.context_length", 0)),
        tensors=tensors,
    )


@dataclass(frozen=True)
class CircuitPlan:
    circuit: str
    model: str
    gpu_layers: int
    slots: int  # n_parallel
    weights: int  # bytes on the GPU
    kv_cache: int
    compute: int
    overhead: int
    num_gpus: float  # the configured fraction

    @property
    def total(self) -> int:
        return self.weights + self.kv_cache + self.compute + self.overhead


def gpu_layers(n_gpu_layers: int, layers: int) -> int:
    return layers if n_gpu_layers < 0 else min(n_gpu_layers, layers)


def kv_cache_bytes(shape: ModelShape, layers_on_gpu: int, n_ctx: int, bytes_per_value: int = KV_BYTES) -> int:
    return 2 * layers_on_gpu * shape.kv_heads * shape.head_size * n_ctx * bytes_per_value


def plan_circuit(name: str, circuit: CircuitConfig, shape: ModelShape, model: str) -> CircuitPlan:
    """What one circuit needs on the GPU with its n_gpu_layers and n_ctx."""
    on_gpu = gpu_layers(circuit.n_gpu_layers, shape.layers)
    first = shape.layers - on_gpu  # llama.cpp offloads the last layers
    everything = circuit.n_gpu_layers < 0 or circuit.n_gpu_layers > shape.layers
    tied = not any(t[0] == "output.weight" for t in shape.tensors)
    weights = 0
    for tensor, _, size in shape.tensors:
        block = _BLOCK.match(tensor)
        if block:
            weights += size if int(block.group(1)) >= first else 0
        elif tensor.startswith("output") or (tied and tensor == "token_embd.weight"):
            weights += size if everything else 0  # the output layer (tied: a copy of the embeddings)
    if on_gpu == 0:
        return CircuitPlan(name, model, 0, circuit.n_parallel, 0, 0, 0, 0, circuit.num_gpus)
    compute = 4 * BATCH * (shape.vocab + shape.heads * circuit.n_ctx + 8 * shape.embedding)
    kv_cache = kv_cache_bytes(shape, on_gpu, circuit.n_ctx) * circuit.n_parallel
    return CircuitPlan(name, model, on_gpu, circuit.n_parallel, weights, kv_cache, compute, CUDA_CONTEXT_BYTES, circuit.num_gpus)


@dataclass(frozen=True)
class Plan:
    circuits: list[CircuitPlan]
    gpu_bytes: int
    warnings: list[str]

    @property
    def total(self) -> int:
        return sum(c.total for c in self.circuits)

    @property
    def fits(self) -> bool:
        return self.total <= self.gpu_bytes


def plan(config: EchoConfig, gpu_bytes: int) -> Plan:
    """Every circuit's needs against one GPU of gpu_bytes; PlanError for an unreadable model."""
    circuits = []
    for name, circuit in config.circuits.items():
        if circuit.engine != "llama":
            continue
        path = resolve_model_path(name, circuit.model) if circuit.model.startswith("embedded:") else Path(circuit.model).expanduser()
        circuits.append(plan_circuit(name, circuit, read_shape(path), path.name))
    warnings = []
    if sum(c.total for c in circuits) > gpu_bytes and any(c.slots > 1 for c in circuits):
        slots = slots_that_fit(circuits, gpu_bytes)
        if slots:
            warnings.append("with fewer slots it fits: " + ", ".join(f"circuits.{n}.n_parallel {k}" for n, k in slots.items()))
    for c in circuits:
        share = c.total / gpu_bytes
        if not c.gpu_layers or abs(share - c.num_gpus) <= 0.15:
            continue
        if share > c.num_gpus:
            warnings.append(
                f"{c.circuit}: needs {share:.0%} of the GPU but asks Ray for num_gpus {c.num_gpus:g}: Ray's fractions schedule, "
                f"they do not limit memory, so Ray could pack more onto this GPU than fits (fix: num_gpus {share:.2f})"
            )
        else:
            warnings.append(f"{c.circuit}: needs {share:.0%} of the GPU but reserves {c.num_gpus:g} of it (fix: num_gpus {share:.2f} leaves room for others)")
    return Plan(circuits, gpu_bytes, warnings)


def slots_that_fit(circuits: list[CircuitPlan], gpu_bytes: int) -> dict[str, int] | None:
    """The most slots per circuit that fit, given up one at a time by the circuit whose slot
    holds the largest KV cache; None when one slot each does not fit either."""
    slots = {c.circuit: c.slots for c in circuits}
    per_slot = {c.circuit: c.kv_cache // c.slots for c in circuits}
    total = sum(c.total for c in circuits)
    while total > gpu_bytes:
        fewer = [n for n in slots if slots[n] > 1 and per_slot[n] > 0]
        if not fewer:
            return None
        largest = max(fewer, key=lambda n: per_slot[n])
        slots[largest] -= 1
        total -= per_slot[largest]
    return slots


def render(result: Plan) -> str:
    def gib(n: int) -> str:
        return f"{n / GiB:6.2f}"

    rows = [
        f"{'circuit':<10} {'model':<42} {'layers':>6} {'slots':>5} {'weights':>8} {'KV':>7} {'compute':>8} {'CUDA':>6} {'total':>7} {'share':>6} {'num_gpus':>8}   (GiB)"
    ]
    for c in result.circuits:
        rows.append(
            f"{c.circuit:<10} {c.model[:42]:<42} {c.gpu_layers:>6} {c.slots:>5} {gib(c.weights):>8} {gib(c.kv_cache):>7} {gib(c.compute):>8} "
            f"{gib(c.overhead):>6} {gib(c.total):>7} {c.total / result.gpu_bytes:>6.0%} {c.num_gpus:>8g}"
        )
    verdict = "fits" if result.fits else "DOES NOT FIT"
    rows.append(
        f"{'all':<10} {'':<42} {'':>6} {'':>5} {'':>8} {'':>7} {'':>8} {'':>6} {gib(result.total):>7} GiB of {result.gpu_bytes / GiB:.1f} GiB: {verdict}"
    )
    return "\n".join(rows + [f"warning: {w}" for w in result.warnings])

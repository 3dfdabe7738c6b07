"""GGUF files with real model shapes and no weights: the header, then a sparse hole as big
as the tensors (so a 26 GB Mixtral takes no disk), for tests of `plan` and `doctor`."""

from __future__ import annotations

import os
from pathlib import Path

import gguf
import numpy as np

Q4_K, Q6_K, F32 = gguf.GGMLQuantizationType.Q4_K, gguf.GGMLQuantizationType.Q6_K, gguf.GGMLQuantizationType.F32

# (layers, embedding, heads, kv heads, feed-forward, vocab, experts)
MIXTRAL_8X7B = (32, 4096, 32, 8, 14336, 32000, 8)
DEEPSEEK_CODER_6_7B = (32, 4096, 32, 32, 11008, 32256, 0)
LLAMA_3_8B = (32, 4096, 32, 8, 14336, 128256, 0)


def write_fake_gguf(path: Path, shape: tuple, context: int = 8192) -> dict[str, int]:
    """Write a llama-architecture header with every tensor of shape; returns name -> bytes."""
    layers, emb, heads, kv_heads, ff, vocab, experts = shape
    head = emb // heads
    tensors: list[tuple[str, tuple[int, ...], gguf.GGMLQuantizationType]] = [
        ("token_embd.weight", (vocab, emb), Q4_K),
        ("output_norm.weight", (emb,), F32),
        ("output.weight", (vocab, emb), Q6_K),
    ]
    for i in range(layers):
        b = f"blk.{i}."
        tensors += [
            (b + "attn_norm.weight", (emb,), F32),
            (b + "ffn_norm.weight", (emb,), F32),
            (b + "attn_q.weight", (emb, emb), Q4_K),
            (b + "attn_k.weight", (kv_heads * head, emb), Q4_K),
            (b + "attn_v.weight", (kv_heads * head, emb), Q6_K),
            (b + "attn_output.weight", (emb, emb), Q4_K),
        ]
        if experts:
            tensors += [
                (b + "ffn_gate_inp.weight", (experts, emb), F32),
                (b + "ffn_gate_exps.weight", (experts, ff, emb), Q4_K),
                (b + "ffn_up_exps.weight", (experts, ff, emb), Q4_K),
                (b + "ffn_down_exps.weight", (experts, emb, ff), Q4_K),
            ]
        else:
            tensors += [(b + "ffn_gate.weight", (ff, emb), Q4_K), (b + "ffn_up.weight", (ff, emb), Q4_K), (b + "ffn_down.weight", (emb, ff), Q6_K)]
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(layers)
    writer.add_context_length(context)
    writer.add_embedding_length(emb)
    writer.add_feed_forward_length(ff)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_vocab_size(vocab)
    if experts:
        writer.add_expert_count(experts)
        writer.add_expert_used_count(2)
    sizes = {}
    for name, dims, kind in tensors:
        block, type_size = gguf.GGML_QUANT_SIZES[kind]
        nbytes = int(np.prod(dims)) // block * type_size
        byte_shape = (*dims[:-1], dims[-1] // block * type_size) if kind != F32 else dims
        writer.add_tensor_info(name, byte_shape, np.dtype(np.uint8 if kind != F32 else np.float32), nbytes, raw_dtype=kind if kind != F32 else None)
        sizes[name] = nbytes
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    writer.close()
    align = 32
    start = (os.path.getsize(path) + align - 1) // align * align
    os.truncate(path, start + sum((n + align - 1) // align * align for n in sizes.values()))
    return sizes

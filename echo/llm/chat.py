"""What the batched engine takes from llama-cpp-python's high-level Llama, so that a reply is
the one its create_chat_completion gives: the chat template chosen the same way from the
GGUF's metadata, the prompt tokenized the same way, the same sampler chain per request, and
the JSON-schema grammar of a response_format."""

from __future__ import annotations

import json
from dataclasses import dataclass

from llama_cpp import _internals, llama_chat_format, llama_grammar

from echo.config import Sampling

Messages = list[dict[str, str]]

# Llama's defaults that Echo does not set: the repeat penalty looks back this far, and
# min_p and typical_p as create_chat_completion leaves them.
PENALTY_LAST_N = 64
MIN_P = 0.05
TYPICAL_P = 1.0

# The formats Llama prefers to a GGUF's own template when it recognises the template.
_KNOWN_FORMATS = {
    "chatml": llama_chat_format.format_chatml,
    "mistral-instruct": llama_chat_format.format_mistral_instruct,
    "llama-3": llama_chat_format.format_llama3,
}


@dataclass(frozen=True)
class Prompt:
    tokens: list[int]
    stops: list[str]  # text that ends the reply, beside the model's end-of-generation tokens


class ChatFormat:
    """Messages -> prompt tokens, as Llama formats and tokenizes them."""

    def __init__(self, model: _internals.LlamaModel):
        self._model = model
        metadata = model.metadata()
        eos, bos = model.token_eos(), model.token_bos()
        name = llama_chat_format.guess_chat_format_from_gguf_metadata(metadata)
        if name in _KNOWN_FORMATS:
            self._format = _KNOWN_FORMATS[name]
        elif "tokenizer.chat_template" in metadata:
            self._format = llama_chat_format.Jinja2ChatFormatter(
                template=metadata["tokenizer.chat_template"],
                eos_token=model.token_get_text(eos) if eos != -1 else "",
                bos_token=model.token_get_text(bos) if bos != -1 else "",
                stop_token_ids=[eos],
            )
        else:
            self._format = llama_chat_format.format_llama2  # Llama's fallback

    def prompt(self, messages: Messages) -> Prompt:
        result = self._format(messages=messages)
        tokens = self._model.tokenize(result.prompt.encode("utf-8"), add_bos=not result.added_special, special=True)
        stops = [] if result.stop is None else [result.stop] if isinstance(result.stop, str) else list(result.stop)
        return Prompt(tokens, stops)


def grammar(response_format: dict | None) -> llama_grammar.LlamaGrammar | None:
    """The grammar that holds a reply to response_format ({"type": "json_object"}, with an
    optional "schema"), as create_chat_completion builds it."""
    if not response_format or response_format.get("type") != "json_object":
        return None
    if "schema" in response_format:
        return llama_grammar.LlamaGrammar.from_json_schema(json.dumps(response_format["schema"]), verbose=False)
    return llama_grammar.LlamaGrammar.from_string(llama_grammar.JSON_GBNF, verbose=False)


def sampler(
    model: _internals.LlamaModel, sampling: Sampling, greedy: bool, seed: int, rules: llama_grammar.LlamaGrammar | None = None
) -> _internals.LlamaSampler:
    """One request's sampler chain, built as Llama builds it: repeat penalty, grammar, then
    greedy or top-k, typical, top-p, min-p, temperature and a seeded draw."""
    chain = _internals.LlamaSampler()
    chain.add_penalties(model.n_vocab(), PENALTY_LAST_N, sampling.repeat_penalty, 0.0, 0.0)
    if rules is not None:
        chain.add_grammar(model, rules)
    temperature = 0.0 if greedy else sampling.temperature
    if temperature == 0.0:
        chain.add_greedy()
    else:
        chain.add_top_k(sampling.top_k)
        chain.add_typical(TYPICAL_P, 1)
        chain.add_top_p(sampling.top_p, 1)
        chain.add_min_p(MIN_P, 1)
        chain.add_temp(temperature)
        chain.add_dist(seed)
    return chain

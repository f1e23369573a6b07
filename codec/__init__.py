"""The prompt codec shared by origin and players: generative model, inversion, decoding,
wire format.

Importing ``codec`` is free: torch loads only when ``load_decoder``/``encode_chunk`` (or the
submodules ``model``, ``generators``, ``encode``, ``decode``, ``train``) are used.
Public entry points: ``load_decoder``, ``encode_chunk``, ``PromptChunkError`` (see
docs/codec.md); ``codec.catalog.add_prompt_representations`` for catalogs.
"""

from codec.wire import PromptChunkError  # numpy only

__all__ = ["PromptChunkError", "encode_chunk", "load_decoder", "load_generator"]


def __getattr__(name):
    if name == "load_decoder":
        from codec.decode import load_decoder

        return load_decoder
    if name == "encode_chunk":
        from codec.encode import encode_chunk

        return encode_chunk
    if name == "load_generator":
        from codec.generators import load_generator

        return load_generator
    raise AttributeError(f"module 'codec' has no attribute {name!r}")

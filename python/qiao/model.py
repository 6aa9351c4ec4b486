"""qiao.Model: an open model file (qiao_model)."""
import ctypes
import os

from . import _types as T
from ._handle import _Handle
from ._library import lib
from .errors import check


class Model(_Handle):
    """A model opened from a .qiao or .gguf file, a Hugging Face folder or a
    llama2.c .bin (with tokenizer_path, its tok.bin). Read-only; may be
    shared by threads. Engines borrow it: it stays open while any uses it."""

    _destroy = "qiao_model_close"

    def __init__(self, path, tokenizer_path=None):
        self._handle = None
        options = T.ModelOpenOptions(
            tokenizer_path=os.fsencode(tokenizer_path) if tokenizer_path else None
        )
        handle = ctypes.c_void_p()
        check(lib.qiao_model_open(os.fsencode(path), ctypes.byref(options), ctypes.byref(handle)))
        self._handle = handle

    @property
    def format(self):
        """"qiao", "gguf", "hf" or "llama2c"."""
        return lib.qiao_model_format(self._live()).decode()

    @property
    def path(self):
        return os.fsdecode(lib.qiao_model_path(self._live()))

    @property
    def architecture(self):
        return self._hparams().architecture.decode()

    @property
    def vocab_size(self):
        return self._hparams().vocab_size

    @property
    def context_length(self):
        return self._hparams().context_length

    def _hparams(self):
        h = T.Hparams()
        # qiao_hparams is larger than the fields mirrored: give it room.
        buf = ctypes.create_string_buffer(4096)
        check(lib.qiao_model_get_hparams(self._live(), ctypes.cast(buf, ctypes.POINTER(T.Hparams))))
        ctypes.memmove(ctypes.addressof(h), buf, ctypes.sizeof(h))
        return h


"""qiao.Tokenizer: text <-> token ids (qiao_tokenizer), and the streaming
detokenizer that generation uses."""
import ctypes
import os

from . import _types as T
from ._handle import _Handle
from ._library import lib, libc
from .errors import check


class Tokenizer(_Handle):
    """A model's own tokenizer: Tokenizer(model), or Tokenizer.open(path) for
    a tokenizer.json, tokenizer.model or tok.bin. Read-only after creation;
    may be shared by threads."""

    _destroy = "qiao_tokenizer_destroy"

    def __init__(self, model):
        self._handle = None
        handle = ctypes.c_void_p()
        check(lib.qiao_tokenizer_create_from_model(model._live(), ctypes.byref(handle)))
        self._handle = handle

    @classmethod
    def open(cls, path):
        self = cls.__new__(cls)
        self._handle = None
        handle = ctypes.c_void_p()
        check(lib.qiao_tokenizer_open(os.fsencode(path), ctypes.byref(handle)))
        self._handle = handle
        return self

    @property
    def vocab_size(self):
        return lib.qiao_tokenizer_vocab_size(self._handle)

    @property
    def bos_id(self):
        """The BOS id, or None."""
        bos = lib.qiao_tokenizer_bos_id(self._handle)
        return None if bos < 0 else bos

    def is_eos(self, token_id):
        return bool(lib.qiao_tokenizer_is_eos(self._handle, token_id))

    def token_text(self, token_id):
        """The vocabulary entry as stored ("▁the", "Ġthe"), or None."""
        text = lib.qiao_tokenizer_token_text(self._handle, token_id)
        return None if text is None else text.decode("utf-8", "replace")

    def encode(self, text, add_bos=None, parse_special=True):
        """Token ids of `text` (str or bytes). add_bos None: the model's own
        setting."""
        data = text.encode() if isinstance(text, str) else bytes(text)
        if add_bos is None:
            add_bos = bool(lib.qiao_tokenizer_adds_bos(self._handle))
        options = T.EncodeOptions(add_bos=add_bos, parse_special=parse_special)
        ids = ctypes.POINTER(ctypes.c_int32)()
        n = ctypes.c_size_t()
        check(
            lib.qiao_tokenizer_encode(
                self._handle, data, len(data), ctypes.byref(options), ctypes.byref(ids),
                ctypes.byref(n),
            )
        )
        try:
            return ids[: n.value]
        finally:
            libc.free(ids)

    def decode(self, ids):
        """The text of `ids` (invalid UTF-8 becomes U+FFFD)."""
        ids = list(ids)
        array = (ctypes.c_int32 * len(ids))(*ids)
        text = ctypes.c_void_p()
        n = ctypes.c_size_t()
        check(
            lib.qiao_tokenizer_decode(self._handle, array, len(ids), ctypes.byref(text),
                                      ctypes.byref(n))
        )
        try:
            return ctypes.string_at(text, n.value).decode("utf-8")
        finally:
            libc.free(text)



class Detokenizer(_Handle):
    """Text as ids arrive: push() returns what is complete (an unfinished
    UTF-8 character is held back), flush() the rest."""

    _destroy = "qiao_detokenizer_destroy"

    def __init__(self, tokenizer):
        self._tokenizer = tokenizer  # must outlive the C detokenizer
        self._handle = None
        handle = ctypes.c_void_p()
        check(lib.qiao_detokenizer_create(tokenizer._handle, ctypes.byref(handle)))
        self._handle = handle

    def _text(self, fn, *args):
        text = ctypes.c_void_p()
        n = ctypes.c_size_t()
        check(fn(self._handle, *args, ctypes.byref(text), ctypes.byref(n)))
        return ctypes.string_at(text, n.value).decode("utf-8") if n.value else ""

    def push(self, token_id):
        return self._text(lib.qiao_detokenizer_push, token_id)

    def flush(self):
        return self._text(lib.qiao_detokenizer_flush)


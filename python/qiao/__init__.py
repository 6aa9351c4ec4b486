"""qiao from Python: ctypes bindings over libqiao.so (docs/api.md).

    import qiao
    model = qiao.Model("stories260K.gguf")
    engine = qiao.Engine(model)
    for token in engine.generate("Once upon a time", max_tokens=60):
        print(token.text, end="", flush=True)

The library is found through $QIAO_LIBRARY, then beside an installed copy of
this package, then by the dynamic linker (libqiao.so.0)."""
from ._library import lib as _lib
from .backends import backends
from .engine import Engine, Generation, Token
from .errors import (DeviceError, InvalidArgumentError, LimitError, MalformedError,
                     NotFoundError, QiaoError, UnsupportedError)
from .model import Model
from .tokenizer import Detokenizer, Tokenizer

__version__ = _lib.qiao_version().decode()

__all__ = [
    "backends", "DeviceError", "Detokenizer", "Engine", "Generation", "InvalidArgumentError", "LimitError",
    "MalformedError", "Model", "NotFoundError", "QiaoError", "Token", "Tokenizer",
    "UnsupportedError",
]

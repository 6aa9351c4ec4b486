"""qiao.backends(): the device plugins the library can find by name."""
import ctypes
import os

from . import _types as T
from ._library import lib, libc
from .errors import check


def backends():
    """[(name, path)] of every libqiao-<name>.so on the search path:
    $QIAO_BACKEND_PATH, beside the executable, and the installed plugin
    folder (lib/qiao beside libqiao.so). "cpu" is also built in."""
    entries = ctypes.POINTER(T.BackendEntry)()
    n = ctypes.c_size_t()
    check(lib.qiao_backend_discover(ctypes.byref(entries), ctypes.byref(n)))
    try:
        return [(entries[i].name.decode(), os.fsdecode(entries[i].path)) for i in range(n.value)]
    finally:
        libc.free(entries)

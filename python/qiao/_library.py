"""Finding and loading libqiao.so, and the C prototypes of what the bindings
call. Only this module touches ctypes declarations; the classes build on it."""
import ctypes
import os

from . import _types as T

MAJOR = 0


def _candidates():
    """Where libqiao.so may be, most specific first."""
    env = os.environ.get("QIAO_LIBRARY")
    if env:
        yield env
    here = os.path.dirname(os.path.abspath(__file__))
    try:  # written by `cmake --install` beside the installed package
        from ._installed import LIBRARY

        yield os.path.normpath(os.path.join(here, LIBRARY))
    except ImportError:
        pass
    yield "libqiao.so.%d" % MAJOR  # the dynamic linker's own search


def _load():
    tried = []
    for path in _candidates():
        try:
            return ctypes.CDLL(path)
        except OSError as e:
            tried.append(str(e))
    raise ImportError(
        "qiao: cannot load libqiao.so (set QIAO_LIBRARY to its path): " + "; ".join(tried)
    )


lib = _load()
# The C library's free(), for the malloc'd results the API hands over.
libc = ctypes.CDLL(None)
libc.free.argtypes = [ctypes.c_void_p]
libc.free.restype = None

_P = ctypes.POINTER
_status = ctypes.c_void_p
_u32, _i32, _size = ctypes.c_uint32, ctypes.c_int32, ctypes.c_size_t
_str = ctypes.c_char_p

_PROTOTYPES = {
    "qiao_version": (_str, []),
    "qiao_status_code": (ctypes.c_int, [_status]),
    "qiao_status_message": (_str, [_status]),
    "qiao_code_name": (_str, [ctypes.c_int]),
    "qiao_status_free": (None, [_status]),
    "qiao_model_open": (_status, [_str, _P(T.ModelOpenOptions), _P(ctypes.c_void_p)]),
    "qiao_model_close": (None, [ctypes.c_void_p]),
    "qiao_model_format": (_str, [ctypes.c_void_p]),
    "qiao_model_path": (_str, [ctypes.c_void_p]),
    "qiao_model_get_hparams": (_status, [ctypes.c_void_p, _P(T.Hparams)]),
    "qiao_tokenizer_create_from_model": (_status, [ctypes.c_void_p, _P(ctypes.c_void_p)]),
    "qiao_tokenizer_open": (_status, [_str, _P(ctypes.c_void_p)]),
    "qiao_tokenizer_destroy": (None, [ctypes.c_void_p]),
    "qiao_tokenizer_vocab_size": (_u32, [ctypes.c_void_p]),
    "qiao_tokenizer_bos_id": (_i32, [ctypes.c_void_p]),
    "qiao_tokenizer_adds_bos": (ctypes.c_bool, [ctypes.c_void_p]),
    "qiao_tokenizer_is_eos": (ctypes.c_bool, [ctypes.c_void_p, _i32]),
    "qiao_tokenizer_token_text": (_str, [ctypes.c_void_p, _i32]),
    "qiao_tokenizer_encode": (
        _status,
        [ctypes.c_void_p, ctypes.c_char_p, _size, _P(T.EncodeOptions), _P(_P(_i32)), _P(_size)],
    ),
    "qiao_tokenizer_decode": (
        _status,
        [ctypes.c_void_p, _P(_i32), _size, _P(ctypes.c_void_p), _P(_size)],
    ),
    "qiao_detokenizer_create": (_status, [ctypes.c_void_p, _P(ctypes.c_void_p)]),
    "qiao_detokenizer_destroy": (None, [ctypes.c_void_p]),
    "qiao_detokenizer_push": (
        _status,
        [ctypes.c_void_p, _i32, _P(ctypes.c_void_p), _P(_size)],
    ),
    "qiao_detokenizer_flush": (_status, [ctypes.c_void_p, _P(ctypes.c_void_p), _P(_size)]),
    "qiao_engine_create": (
        _status,
        [ctypes.c_void_p, _P(T.EngineOptions), _P(ctypes.c_void_p)],
    ),
    "qiao_engine_destroy": (None, [ctypes.c_void_p]),
    "qiao_engine_hparams": (_P(T.Hparams), [ctypes.c_void_p]),
    "qiao_engine_max_context": (_u32, [ctypes.c_void_p]),
    "qiao_engine_backend_name": (_str, [ctypes.c_void_p]),
    "qiao_engine_device_name": (_str, [ctypes.c_void_p]),
    "qiao_engine_seq_create": (_status, [ctypes.c_void_p, _P(_i32)]),
    "qiao_engine_seq_free": (None, [ctypes.c_void_p, _i32]),
    "qiao_engine_seq_length": (_u32, [ctypes.c_void_p, _i32]),
    "qiao_engine_forward": (
        _status,
        [ctypes.c_void_p, _P(T.Batch), _P(ctypes.c_float), _P(_i32)],
    ),
    "qiao_backend_discover": (_status, [_P(_P(T.BackendEntry)), _P(_size)]),
    "qiao_sampler_default_params": (T.SamplerParams, []),
    "qiao_sampler_create": (_status, [_P(T.SamplerParams), _u32, _P(ctypes.c_void_p)]),
    "qiao_sampler_destroy": (None, [ctypes.c_void_p]),
    "qiao_sampler_accept": (None, [ctypes.c_void_p, _i32]),
    "qiao_sampler_sample": (
        _status,
        [ctypes.c_void_p, _P(ctypes.c_float), _P(_i32), ctypes.c_void_p],
    ),
}

for _name, (_restype, _argtypes) in _PROTOTYPES.items():
    _fn = getattr(lib, _name)
    _fn.restype = _restype
    _fn.argtypes = _argtypes

"""ctypes mirrors of the C structs the bindings pass (include/qiao/*.h).
Each starts with struct_size, so the library reads only what is given."""
import ctypes

_u32, _size, _bool = ctypes.c_uint32, ctypes.c_size_t, ctypes.c_bool


class _Sized(ctypes.Structure):
    def __init__(self, **fields):
        super().__init__(struct_size=ctypes.sizeof(self), **fields)


class ModelOpenOptions(_Sized):  # qiao_model_open_options
    _fields_ = [("struct_size", _size), ("tokenizer_path", ctypes.c_char_p), ("progress", _bool)]


class EncodeOptions(_Sized):  # qiao_encode_options
    _fields_ = [("struct_size", _size), ("add_bos", _bool), ("parse_special", _bool)]


class EngineOptions(_Sized):  # qiao_engine_options, the fields of 0.1 (the library reads only these)
    _fields_ = [
        ("struct_size", _size),
        ("backend", ctypes.c_char_p),
        ("n_threads", _u32),
        ("block_size", _u32),
        ("n_blocks", _u32),
        ("max_context", _u32),
        ("max_seqs", _u32),
        ("max_batch_tokens", _u32),
        ("cache_dtype", ctypes.c_int),
        ("allow_fallback", _bool),
        ("verbose", _bool),
        ("device_index", _u32),
        ("batch_invariant", _bool),
        ("prefix_cache", _bool),
        ("exact_matmul", _bool),
    ]


class SamplerParams(ctypes.Structure):  # qiao_sampler_params
    _fields_ = [
        ("struct_size", _size),
        ("temperature", ctypes.c_float),
        ("top_k", _u32),
        ("top_p", ctypes.c_float),
        ("min_p", ctypes.c_float),
        ("repeat_penalty", ctypes.c_float),
        ("presence_penalty", ctypes.c_float),
        ("frequency_penalty", ctypes.c_float),
        ("penalty_window", _u32),
        ("seed", ctypes.c_uint64),
        ("n_logprobs", _u32),
    ]


class Hparams(ctypes.Structure):  # the leading fields of qiao_hparams
    _fields_ = [
        ("architecture", ctypes.c_char * 32),
        ("vocab_size", _u32),
        ("context_length", _u32),
    ]


class Batch(ctypes.Structure):  # qiao_batch
    _P = ctypes.POINTER
    _fields_ = [
        ("n_tokens", _size),
        ("tokens", _P(ctypes.c_int32)),
        ("seqs", _P(ctypes.c_int32)),
        ("positions", _P(ctypes.c_int32)),
        ("want", _P(ctypes.c_uint8)),
    ]


class BackendEntry(ctypes.Structure):  # qiao_backend_entry
    _fields_ = [("name", ctypes.c_char * 64), ("path", ctypes.c_char * 4096)]

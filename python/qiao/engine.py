"""qiao.Engine: a model running on a device (qiao_engine), with generation
as a streaming iterator and logits as a memoryview (a numpy array when numpy
is installed)."""
import ctypes
import threading
from collections import namedtuple

from . import _types as T
from ._handle import _Handle
from ._library import lib
from .errors import check
from .tokenizer import Detokenizer, Tokenizer

try:
    import numpy
except ImportError:  # numpy is optional
    numpy = None

Token = namedtuple("Token", ["id", "text"])
Token.__doc__ = "One generated token: its id and the text it completes."

_i32 = ctypes.c_int32


class Engine(_Handle):
    """Binds `model` to one device of a backend ("cpu" by default, or a
    plugin name such as "opencl", or a plugin path). The model must stay
    open while the engine lives (the engine keeps a reference). Calls are
    serialized by a lock: one engine runs one device queue."""

    _destroy = "qiao_engine_destroy"

    def __init__(self, model, backend=None, n_threads=0, max_context=0, max_seqs=0,
                 device_index=0, exact_matmul=False, verbose=False):
        self._handle = None
        self.model = model
        # Built here, not by qiao_engine_default_options(): that returns the
        # whole struct of the library's version, which may be larger than
        # this mirror (fields are appended); struct_size says what is given.
        options = T.EngineOptions(
            backend=backend.encode() if backend else None, n_threads=n_threads,
            max_context=max_context, max_seqs=max_seqs, device_index=device_index,
            exact_matmul=exact_matmul, verbose=verbose)
        handle = ctypes.c_void_p()
        check(lib.qiao_engine_create(model._live(), ctypes.byref(options), ctypes.byref(handle)))
        self._handle = handle
        self._lock = threading.Lock()
        self._tokenizer = None
        self.vocab_size = lib.qiao_engine_hparams(handle).contents.vocab_size
        self.max_context = lib.qiao_engine_max_context(handle)
        self.backend_name = lib.qiao_engine_backend_name(handle).decode()
        self.device_name = lib.qiao_engine_device_name(handle).decode()

    @property
    def tokenizer(self):
        """The model's tokenizer (made on first use)."""
        if self._tokenizer is None:
            self._tokenizer = Tokenizer(self.model)
        return self._tokenizer

    def _prompt_ids(self, prompt):
        if isinstance(prompt, (str, bytes)):
            ids = self.tokenizer.encode(prompt)
            if not ids and self.tokenizer.bos_id is not None:
                ids = [self.tokenizer.bos_id]
            return ids
        return [int(t) for t in prompt]

    def _forward(self, seq, tokens, start, want_all=False, logits=None, argmax=None):
        n = len(tokens)
        batch = T.Batch(
            n_tokens=n,
            tokens=(_i32 * n)(*tokens),
            seqs=(_i32 * n)(*([seq] * n)),
            positions=(_i32 * n)(*range(start, start + n)),
            want=(ctypes.c_uint8 * n)(*([1] * n)) if want_all else None,
        )
        check(lib.qiao_engine_forward(self._live(), ctypes.byref(batch), logits, argmax))

    def _seq_create(self):
        seq = _i32()
        check(lib.qiao_engine_seq_create(self._live(), ctypes.byref(seq)))
        return seq.value

    def logits(self, ids):
        """The logits after each of `ids`, from an empty sequence: shape
        (len(ids), vocab_size), float32; a numpy array when numpy is
        installed, else a memoryview."""
        ids = [int(t) for t in ids]
        n = len(ids)
        if n == 0:
            raise ValueError("qiao.Engine.logits: no ids")
        out = (ctypes.c_float * (n * self.vocab_size))()
        with self._lock:
            seq = self._seq_create()
            try:
                self._forward(seq, ids, 0, want_all=True, logits=out)
            finally:
                lib.qiao_engine_seq_free(self._handle, seq)
        if numpy is not None:
            return numpy.frombuffer(out, dtype=numpy.float32).reshape(n, self.vocab_size)
        return memoryview(out).cast("B").cast("f", (n, self.vocab_size))

    def generate(self, prompt, max_tokens=128, temperature=0.0, top_k=40, top_p=0.95,
                 min_p=0.05, seed=0, stop_at_eos=True):
        """Streams the continuation of `prompt` (text, encoded with the
        model's tokenizer, or a list of ids) as Token(id, text) items.
        temperature 0 is greedy (argmax on the device). Stops after
        max_tokens, at an end-of-sequence token (not yielded) when
        stop_at_eos, or when the sequence reaches max_context."""
        return Generation(self, self._prompt_ids(prompt), max_tokens, temperature, top_k, top_p,
                          min_p, seed, stop_at_eos)

    def generate_text(self, prompt, max_tokens=128, **sampling):
        """The whole continuation of `prompt` as one string."""
        return "".join(t.text for t in self.generate(prompt, max_tokens, **sampling))



class Generation:
    """The iterator Engine.generate returns: one engine step per item. Its
    sequence is freed when it ends or on close()."""

    def __init__(self, engine, ids, max_tokens, temperature, top_k, top_p, min_p, seed,
                 stop_at_eos):
        if not ids:
            raise ValueError("qiao.Engine.generate: empty prompt and the model has no BOS")
        self._engine = engine
        self._pending = ids  # tokens to feed before the next pick
        self._left = max_tokens
        self._stop_at_eos = stop_at_eos
        self._sampler = None
        self._seq = None
        self._detok = Detokenizer(engine.tokenizer)
        if temperature > 0:
            params = lib.qiao_sampler_default_params()
            params.temperature = temperature
            params.top_k, params.top_p, params.min_p, params.seed = top_k, top_p, min_p, seed
            sampler = ctypes.c_void_p()
            check(lib.qiao_sampler_create(ctypes.byref(params), engine.vocab_size,
                                          ctypes.byref(sampler)))
            self._sampler = sampler
            self._logits = (ctypes.c_float * engine.vocab_size)()
            for t in ids:
                lib.qiao_sampler_accept(sampler, t)
        with engine._lock:
            self._seq = engine._seq_create()

    def __iter__(self):
        return self

    def __next__(self):
        e = self._engine
        if self._seq is None or self._left <= 0:
            self.close()
            raise StopIteration
        with e._lock:
            start = lib.qiao_engine_seq_length(e._live(), self._seq)
            if start + len(self._pending) > e.max_context:
                self._finish()
                raise StopIteration
            token = _i32()
            if self._sampler is None:
                e._forward(self._seq, self._pending, start, argmax=ctypes.byref(token))
            else:
                e._forward(self._seq, self._pending, start, logits=self._logits)
                check(lib.qiao_sampler_sample(self._sampler, self._logits, ctypes.byref(token),
                                              None))
                lib.qiao_sampler_accept(self._sampler, token.value)
        token = token.value
        self._left -= 1
        if self._stop_at_eos and e.tokenizer.is_eos(token):
            self._finish()
            raise StopIteration
        self._pending = [token]
        text = self._detok.push(token)
        if self._left == 0:  # the last token: what the detokenizer still holds
            text += self._detok.flush()
        return Token(token, text)

    def _finish(self):
        self.close()

    def close(self):
        """Ends the generation and frees its sequence."""
        e = self._engine
        if self._seq is not None and e._handle:
            with e._lock:
                lib.qiao_engine_seq_free(e._handle, self._seq)
        self._seq = None
        if self._sampler:
            lib.qiao_sampler_destroy(self._sampler)
            self._sampler = None

    def __del__(self):
        self.close()

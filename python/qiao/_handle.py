"""The lifetime every wrapped C object shares: an owned handle, freed by
close() (also on `with` exit and on garbage collection), and refused once
closed."""
from ._library import lib


class _Handle:
    _destroy = None  # the name of the C function that frees the handle
    _handle = None

    def _live(self):
        if not self._handle:
            raise ValueError(f"qiao.{type(self).__name__}: used after close()")
        return self._handle

    def close(self):
        if self._handle:
            getattr(lib, self._destroy)(self._handle)
            self._handle = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        self.close()

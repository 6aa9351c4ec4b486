"""qiao's errors as Python exceptions. Every failing C call becomes a
QiaoError (or the subclass for its code) carrying the library's message."""
import ctypes

from ._library import lib


class QiaoError(Exception):
    """A qiao_status: .code (qiao_code), .code_name ("malformed"), .message."""

    def __init__(self, code, message):
        self.code = code
        self.code_name = lib.qiao_code_name(code).decode()
        self.message = message
        super().__init__("%s: %s" % (self.code_name, message))


class InvalidArgumentError(QiaoError, ValueError):
    pass


class NotFoundError(QiaoError, LookupError):
    pass


class MalformedError(QiaoError, ValueError):
    pass


class UnsupportedError(QiaoError, NotImplementedError):
    pass


class LimitError(QiaoError):
    pass


class DeviceError(QiaoError):
    pass


# qiao_code values (include/qiao/status.h) -> exception classes.
_BY_CODE = {
    1: InvalidArgumentError,
    2: NotFoundError,
    4: MalformedError,
    5: UnsupportedError,
    7: LimitError,
    8: DeviceError,
}


def check(status):
    """Raises the status as an exception (freeing it); returns on NULL."""
    if not status:
        return
    status = ctypes.c_void_p(status)
    code = lib.qiao_status_code(status)
    message = lib.qiao_status_message(status).decode("utf-8", "replace")
    lib.qiao_status_free(status)
    raise _BY_CODE.get(code, QiaoError)(code, message)

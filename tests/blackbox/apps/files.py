"""``app`` answers with ``wsgi.file_wrapper`` over ``$FERRULE_TEST_FILE`` or a BytesIO.

- ``/whole``: the whole file; ``?seek=N`` first moves the file's offset to N;
  ``?length=N`` declares ``Content-Length: N``; ``?block=N`` is the block size.
- ``/bytesio``: a BytesIO of ``BYTESIO_DATA`` (not a real file), recording ``close``.
"""

from __future__ import annotations

import io
import os

from apps import query, record

BYTESIO_DATA = bytes(range(256)) * 300  # 76800 deterministic bytes


class RecordingBytesIO(io.BytesIO):
    def __init__(self, data, environ):
        super().__init__(data)
        self.environ = environ

    def close(self):
        record(self.environ, "close")
        super().close()


def app(environ, start_response):
    q = query(environ)
    wrapper = environ["wsgi.file_wrapper"]
    headers = [("Content-Type", "application/octet-stream")]
    if "length" in q:
        headers.append(("Content-Length", q["length"]))
    path = environ["PATH_INFO"]
    if path == "/whole":
        f = open(os.environ["FERRULE_TEST_FILE"], "rb")  # the server closes it
        if "seek" in q:
            f.seek(int(q["seek"]))
    elif path == "/bytesio":
        f = RecordingBytesIO(BYTESIO_DATA, environ)
        if "seek" in q:
            f.seek(int(q["seek"]))
    else:
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"no such path\n"]
    start_response("200 OK", headers)
    if "block" in q:
        return wrapper(f, int(q["block"]))
    return wrapper(f)

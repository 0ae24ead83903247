"""``echo``: read the whole request body from ``wsgi.input``; answer its length in bytes.

The benchmark POSTs 4 KiB, so the answer is ``4096``.
"""


def app(environ, start_response):
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    body = environ["wsgi.input"].read(length) if length > 0 else b""
    answer = str(len(body)).encode()
    start_response(
        "200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(answer)))]
    )
    return [answer]

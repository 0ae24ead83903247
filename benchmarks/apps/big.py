"""``big``: a 1 MiB response as 16 chunks of 64 KiB, with Content-Length."""

CHUNK = b"x" * (64 * 1024)
CHUNKS = 16
HEADERS = [
    ("Content-Type", "application/octet-stream"),
    ("Content-Length", str(len(CHUNK) * CHUNKS)),
]


def app(environ, start_response):
    start_response("200 OK", HEADERS)
    return [CHUNK] * CHUNKS

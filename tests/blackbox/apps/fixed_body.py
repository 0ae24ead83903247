"""``app`` answers every request with the same 11 bytes (after reading any body)."""


def app(environ, start_response):
    environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "11")])
    return [b"fixed body\n"]

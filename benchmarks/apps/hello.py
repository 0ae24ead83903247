"""``hello``: ``Hello, World!`` (13 bytes, text/plain, Content-Length), whatever the request."""

BODY = b"Hello, World!"
HEADERS = [("Content-Type", "text/plain"), ("Content-Length", str(len(BODY)))]


def app(environ, start_response):
    start_response("200 OK", HEADERS)
    return [BODY]

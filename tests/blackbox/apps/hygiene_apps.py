"""``app`` reports the process state the hygiene options set, as JSON."""

import json
import os


def app(environ, start_response):
    mask = os.umask(0)
    os.umask(mask)
    body = json.dumps(
        {
            "cwd": os.getcwd(),
            "umask": mask,
            "uid": os.getuid(),
            "gid": os.getgid(),
            "env": os.environ.get("HYGIENE_MARKER"),
            "pid": os.getpid(),
        }
    ).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]

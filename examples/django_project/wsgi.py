"""WSGI entry point: ``ferrule examples.django_project.wsgi:application``.

With ``DJANGO_MIGRATE=1`` in the environment, migrations are applied on import,
before the server binds its socket.
"""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "examples.django_project.settings")

application = get_wsgi_application()

if os.environ.get("DJANGO_MIGRATE") == "1":
    from django.core.management import call_command

    call_command("migrate", interactive=False, verbosity=0)

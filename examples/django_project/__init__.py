"""A minimal Django project served by ferrule.

Set-up and serving, from the repository root::

    python -m examples.django_project migrate
    python -m examples.django_project createsuperuser   # for /admin/
    ferrule examples.django_project.wsgi:application

The SQLite database lives at ``DJANGO_DB_PATH`` (default: a file in the system's
temporary directory), so nothing is written to the repository. ``DJANGO_MIGRATE=1``
makes the WSGI module apply migrations when it is imported.
"""

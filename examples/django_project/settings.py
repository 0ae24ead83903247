"""Settings of the example Django project: admin, sessions, CSRF, SQLite; nothing else.

Environment variables:

- ``DJANGO_SECRET_KEY``: the secret key (a development default otherwise).
- ``DJANGO_DEBUG=1``: turn DEBUG on (off by default, as a served app should be).
- ``DJANGO_DB_PATH``: the SQLite file (default: in the system's temporary directory,
  never the current directory).
- ``DJANGO_ALLOWED_HOSTS``: extra host names, comma-separated, besides the loopback ones.
"""

import os
import tempfile

SECRET_KEY = os.environ.get(
    "DJANGO_SECRET_KEY", "django-insecure-dev-only-set-DJANGO_SECRET_KEY-in-production"
)
DEBUG = os.environ.get("DJANGO_DEBUG") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]"] + [
    host.strip() for host in os.environ.get("DJANGO_ALLOWED_HOSTS", "").split(",") if host.strip()
]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "examples.django_project.urls"
WSGI_APPLICATION = "examples.django_project.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get(
            "DJANGO_DB_PATH",
            os.path.join(tempfile.gettempdir(), "ferrule-example-django.sqlite3"),
        ),
    }
}

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# The admin's CSS and JS are not served (no staticfiles app): pages render unstyled.
STATIC_URL = "static/"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# With DEBUG off Django would only mail errors (to nobody: ADMINS is empty). Send them
# to stderr instead, where ferrule's log shows them.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "loggers": {"django.request": {"handlers": ["stderr"], "level": "WARNING"}},
}

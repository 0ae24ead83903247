"""``python -m examples.django_project COMMAND``: Django's ``manage.py`` for this project."""

import os
import sys

from django.core.management import execute_from_command_line

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "examples.django_project.settings")
    execute_from_command_line([f"{sys.executable} -m examples.django_project", *sys.argv[1:]])

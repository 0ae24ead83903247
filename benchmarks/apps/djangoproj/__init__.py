"""``django``: a small Django project (no database) whose index is a template view."""

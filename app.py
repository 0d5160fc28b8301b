"""WSGI entry point: ``gunicorn app:app`` serves the bundled default bot."""

from alime.serving.app import create_app

app = create_app()

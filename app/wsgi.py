"""WSGI entry point: plain HTTP (the REST API, pages) from a WSGI server beside Daphne's sockets."""
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "app.settings")

application = get_wsgi_application()

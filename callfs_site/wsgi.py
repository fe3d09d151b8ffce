"""WSGI entry point (gunicorn callfs_site.wsgi:application)."""

import os

import django

from callfs_site.handlers import CallFSWSGIHandler

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "callfs_site.settings")

django.setup(set_prefix=False)  # as django.core.wsgi.get_wsgi_application
application = CallFSWSGIHandler()

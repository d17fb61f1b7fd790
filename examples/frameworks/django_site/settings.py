"""Settings of the example Django site: ``request.session`` is the PHP session."""

from __future__ import annotations

import os

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-only-not-a-secret")
DEBUG = False
ALLOWED_HOSTS = ["localhost", "127.0.0.1"]
ROOT_URLCONF = "django_site.urls"
WSGI_APPLICATION = "django_site.wsgi.application"
INSTALLED_APPS = ["django.contrib.sessions"]  # for manage.py clearsessions
DATABASES: dict[str, dict[str, str]] = {}
USE_TZ = True

# The PHP session: the engine, and phpsess's middleware in place of Django's (PHP's own
# cookie and cache headers; Django's middleware works too, with Django's cookie).
SESSION_ENGINE = "phpsess.django"
MIDDLEWARE = ["phpsess.django.SessionMiddleware"]
# The PHP pages' settings: their php.ini (or a dict of session.* settings).
PHPSESS_INI = os.environ.get("PHPSESS_INI")
# The PHP session's cookie, so that Django's own tools (the test client) find it too.
SESSION_COOKIE_NAME = "PHPSESSID"

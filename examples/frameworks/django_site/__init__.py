"""A Django site on the PHP pages' sessions (examples/frameworks/django_site)."""

"""URLs of the example Django site, under /django/ (nginx sends *.php to php-fpm)."""

from __future__ import annotations

from django.urls import path

from . import views

urlpatterns = [
    path("django/", views.index),
    path("django/login", views.login),
    path("django/logout", views.logout),
    path("django/cart", views.cart),
    path("django/count", views.count),
    path("django/merge", views.merge),
]

"""URL map: the admin and the CSRF-protected form."""

from django.contrib import admin
from django.urls import path

from examples.django_project import views

urlpatterns = [
    path("", views.index, name="index"),
    path("form/", views.message_form, name="form"),
    path("admin/", admin.site.urls),
]

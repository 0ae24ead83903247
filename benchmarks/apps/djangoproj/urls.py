"""URL map: the template view at ``/``."""

from django.urls import path

from djangoproj import views

urlpatterns = [path("", views.index, name="index")]

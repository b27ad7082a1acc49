"""URL routes of the demo (``/metrics`` comes from django_prometheus.urls)."""

from django.urls import include, path

from demo import views

urlpatterns = [
    path("healthz", views.healthz, name="healthz"),
    path("api/items", views.items, name="items"),
    path("api/cache", views.cached, name="cache"),
    path("api/tasks/<str:kind>", views.enqueue, name="enqueue"),
    path("", include("django_prometheus.urls")),
]

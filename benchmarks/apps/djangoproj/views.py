"""The benchmarked view: a template with a loop, a filter and a URL tag."""

from django.shortcuts import render

ITEMS = [
    {"id": number, "name": f"Item {number}", "price": number * 1.25, "tags": ["new", "sale"]}
    for number in range(1, 21)
]


def index(request):
    return render(request, "index.html", {"title": "Catalogue", "items": ITEMS})

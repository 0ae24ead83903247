"""Views of the example project.

The form's template is a string here, so the project is Python files only.
"""

from django.http import HttpRequest, HttpResponse
from django.template import engines
from django.views.decorators.http import require_GET, require_http_methods

FORM_TEMPLATE = """<!doctype html>
<html>
<head><title>CSRF-protected form</title></head>
<body>
<h1>Leave a message</h1>
{% if message is not None %}<p id="echo">You said: {{ message }}</p>{% endif %}
<form method="post" action="{% url 'form' %}">
  {% csrf_token %}
  <label for="message">Message</label>
  <input id="message" name="message" maxlength="200">
  <button type="submit">Send</button>
</form>
</body>
</html>
"""


@require_GET
def index(request: HttpRequest) -> HttpResponse:
    return HttpResponse(
        b'<h1>Django on ferrule</h1><p><a href="/form/">form</a> | <a href="/admin/">admin</a></p>'
    )


@require_http_methods(["GET", "POST"])
def message_form(request: HttpRequest) -> HttpResponse:
    """GET renders a form carrying a CSRF token; POST echoes the ``message`` field.

    The CSRF check is CsrfViewMiddleware's: a POST without the cookie and the matching
    token never reaches this view (403). Rendering with ``request`` is what gives
    ``{% csrf_token %}`` its value.
    """
    message = request.POST.get("message", "") if request.method == "POST" else None
    template = engines["django"].from_string(FORM_TEMPLATE)
    return HttpResponse(template.render({"message": message}, request))

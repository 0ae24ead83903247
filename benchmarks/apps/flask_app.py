"""``flask``: a small Flask application; the benchmark fetches its JSON endpoint."""

from flask import Flask, abort, jsonify

app = Flask(__name__)

ITEMS = [
    {"id": number, "name": f"item {number}", "price": round(number * 1.25, 2), "tags": ["a", "b"]}
    for number in range(1, 11)
]


@app.get("/")
def index():
    return "<p>A small Flask app: see <a href='/api/items'>/api/items</a>.</p>"


@app.get("/api/items")
def list_items():
    return jsonify(items=ITEMS, count=len(ITEMS))


@app.get("/api/items/<int:item_id>")
def get_item(item_id):
    if not 1 <= item_id <= len(ITEMS):
        abort(404)
    return jsonify(ITEMS[item_id - 1])

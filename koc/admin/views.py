"""Admin panel pages (placeholder replaced by the admin work)."""

from flask import Blueprint

admin_blueprint = Blueprint("admin", __name__, template_folder="templates")

"""Flask extensions, created unbound here and bound to an app in `create_app`."""

from typing import TYPE_CHECKING

from flask_babel import Babel
from flask_migrate import Migrate
from flask_smorest import Api
from flask_sqlalchemy import SQLAlchemy
from flask_wtf import CSRFProtect
from sqlalchemy import MetaData
from sqlalchemy.orm import DeclarativeBase

from koc.core.fields import IdConverter, KeyConverter, id_parameter_schema, key_parameter_schema

# Stable constraint names, so Alembic migrations name the same things on SQLite and PostgreSQL.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


db = SQLAlchemy(model_class=Base)

# Models subclass `Model`: Flask-SQLAlchemy's db.Model, which type checkers cannot see through,
# so to them it is the declarative base it is built on.
if TYPE_CHECKING:
    Model = Base
else:
    Model = db.Model
migrate = Migrate()
api = Api()
# Once, not per app: every app's OpenAPI document describes `<id:...>` and `<key:...>` paths.
api.register_converter(IdConverter, id_parameter_schema)
api.register_converter(KeyConverter, key_parameter_schema)
babel = Babel()
csrf = CSRFProtect()

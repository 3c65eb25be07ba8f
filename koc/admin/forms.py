"""The panel's own forms. Every admin form is a Flask-WTF form, so each carries the CSRF token;
labels are lazily translated. Domain pages keep their forms next to them (koc/<domain>/admin.py).
"""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import HiddenField, PasswordField, SelectField, StringField
from wtforms.validators import AnyOf, DataRequired, Length

from koc.admin.i18n import SUPPORTED_LOCALES


def strip(value: str | None) -> str | None:
    return value.strip() if value else value


class ActionForm(FlaskForm):
    """No fields: a button that only posts (sign out, publish, mark removed) still needs the
    CSRF token."""


class LoginForm(FlaskForm):
    email = StringField(_l("Email"), filters=[strip], validators=[DataRequired(), Length(max=254)])
    password = PasswordField(_l("Password"), validators=[DataRequired(), Length(max=1024)])


class LocaleForm(FlaskForm):
    locale = SelectField(choices=list(SUPPORTED_LOCALES), validators=[AnyOf(SUPPORTED_LOCALES)])
    next = HiddenField()

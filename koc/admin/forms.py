"""Admin panel forms. Every form carries Flask-WTF's CSRF token; labels are lazily translated."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import HiddenField, PasswordField, SelectField, StringField, TextAreaField
from wtforms.validators import AnyOf, DataRequired, InputRequired, Length, Optional

from koc.admin.i18n import SUPPORTED_LOCALES
from koc.submissions.models import REJECT_REASONS

RATINGS = (1, 2, 3, 4, 5)
# Labels for the fixed reject reasons, in the order the select offers them.
REJECT_REASON_LABELS = {
    "invalid_proof": _l("Invalid proof"),
    "duplicate": _l("Duplicate"),
    "outside_window": _l("Outside the kit's window"),
    "off_brief": _l("Did not follow the brief"),
    "other": _l("Other"),
}
assert tuple(REJECT_REASON_LABELS) == REJECT_REASONS, "reject reasons out of step"


class LoginForm(FlaskForm):
    email = StringField(
        _l("Email"),
        filters=[lambda value: value.strip() if value else value],
        validators=[DataRequired(), Length(max=254)],
    )
    password = PasswordField(_l("Password"), validators=[DataRequired(), Length(max=1024)])


class LogoutForm(FlaskForm):
    """No fields: exists so that logging out needs the CSRF token."""


class LocaleForm(FlaskForm):
    locale = SelectField(choices=list(SUPPORTED_LOCALES), validators=[AnyOf(SUPPORTED_LOCALES)])
    next = HiddenField()


class ApproveForm(FlaskForm):
    rating = SelectField(
        _l("Rating"),
        # Plain strings: (value, label) tuples are deprecated in WTForms 3.3, while its
        # SelectChoice replacement does not exist in the older WTForms Flask-WTF allows.
        choices=[str(value) for value in RATINGS],
        coerce=int,
        default=3,
        validators=[InputRequired()],
    )


class RejectForm(FlaskForm):
    # Missing from the form (an older page, a script): "other", explained by the free text.
    reason_code = SelectField(
        _l("Reason"),
        choices=list(REJECT_REASONS),
        default="other",
        validators=[Optional()],
    )
    reason = TextAreaField(
        _l("Reason"),
        filters=[lambda value: value.strip() if value else value],
        validators=[DataRequired(), Length(max=1000)],
    )


# Which form checks a POST to /admin/reviews/<id>, by the hidden "decision" field.
REVIEW_FORMS: dict[str, type[FlaskForm]] = {"approve": ApproveForm, "reject": RejectForm}


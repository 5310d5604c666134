from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from django import forms
from django.contrib.auth.models import User

from inference.preprocessing import ACCEPTED_FORMATS, ACCEPTED_FORMATS_TEXT

from .models import Patient, Review, Scan
from .selectors import teams_for


class PatientForm(forms.ModelForm):
    class Meta:
        model = Patient
        fields = ["team", "mrn", "name", "birth_date", "sex"]
        widgets = {"birth_date": forms.DateInput(format="%Y-%m-%d", attrs={"type": "date"})}

    def __init__(self, *args: Any, user: User, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        teams = teams_for(user)
        team = cast(forms.ModelChoiceField, self.fields["team"])
        team.queryset = teams
        team.empty_label = None
        if teams.count() == 1:
            self.fields["team"].widget = forms.HiddenInput()
            self.fields["team"].initial = teams.first()


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    widget = MultipleFileInput

    def clean(self, data: Any, initial: Any = None) -> list[Any]:
        files = data if isinstance(data, list | tuple) else [data]
        files = [f for f in files if f]
        if not files and self.required:
            raise forms.ValidationError(f"Choose at least one CT slice ({ACCEPTED_FORMATS_TEXT}).")
        return files


class ScanUploadForm(forms.ModelForm):
    class Meta:
        model = Scan
        fields = ["study_date", "note"]
        widgets = {
            "study_date": forms.DateInput(format="%Y-%m-%d", attrs={"type": "date"}),
            "note": forms.Textarea(attrs={"rows": 2}),
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Added here, not declared: a form's own `files` attribute holds the uploaded files.
        self.fields["files"] = MultipleFileField(
            label="CT slices",
            help_text=(
                f"One or many {ACCEPTED_FORMATS_TEXT} slices of one study. "
                "Files are checked by their content."
            ),
            widget=MultipleFileInput(
                attrs={"accept": ",".join(content_type for content_type, _ in ACCEPTED_FORMATS.values())}
            ),
        )
        self.fields["study_date"].required = False  # the service uses today when it is left empty


class ReviewForm(forms.ModelForm):
    # Offered from this prediction's current reviews only; the service checks again on save.
    supersedes = forms.TypedChoiceField(
        required=False, coerce=int, empty_value=None, label="This review", choices=[("", "is a new review")]
    )

    class Meta:
        model = Review
        fields = ["verdict", "label", "comment"]
        widgets = {"verdict": forms.RadioSelect, "comment": forms.Textarea(attrs={"rows": 2})}

    def __init__(self, *args: Any, correctable: Sequence[Review] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        supersedes = cast(forms.TypedChoiceField, self.fields["supersedes"])
        if correctable:
            supersedes.choices = [
                ("", "is a new review"),
                *(
                    (r.pk, f"corrects review {r.pk} by {r.reviewer} ({r.get_label_display()})")
                    for r in correctable
                ),
            ]
        else:
            supersedes.widget = forms.HiddenInput()
        self.fields["label"].required = False
        self.fields["label"].help_text = "Only when you disagree: the label you read."

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from django import forms
from django.contrib.auth.models import User

from inference.preprocessing import ACCEPTED_FORMATS, ACCEPTED_FORMATS_TEXT

from .models import LABEL_CHOICES, Patient, Review, Scan, Study
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


# What the file chooser offers: the image types, and DICOM files or zips of them.
UPLOAD_ACCEPT = [
    *(content_type for content_type, _ in ACCEPTED_FORMATS.values()),
    ".dcm",
    "application/dicom",
    ".zip",
    "application/zip",
]


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
                f"One or many {ACCEPTED_FORMATS_TEXT} slices of one study, or DICOM files (.dcm, or a "
                ".zip of them: each series becomes a scan). Files are checked by their content."
            ),
            widget=MultipleFileInput(attrs={"accept": ",".join(UPLOAD_ACCEPT)}),
        )
        self.fields["study_date"].required = False  # the service uses today when it is left empty
        self.fields["confirm_patient"] = forms.BooleanField(
            required=False,
            label="The DICOM series are this patient's, even if their PatientID differs from the MRN",
        )
        self.fields["priority"] = forms.ChoiceField(
            choices=[("", "As the DICOM header says (else routine)"), *Study.Priority.choices],
            required=False,
            help_text="How soon the study must be read: stat and urgent studies come first on the worklist.",
        )
        self.fields["indication"] = forms.CharField(
            required=False,
            max_length=2000,
            widget=forms.Textarea(attrs={"rows": 2}),
            help_text="Why the study was requested.",
        )


class ReadingForm(forms.Form):
    """A clinician's signed reading of an AI result: the label they read (nothing chosen at first),
    a comment, whether it is the study's report or a second opinion, and, when amending, the signed
    reading it replaces (an amendment keeps that reading's kind). Agree or correct follows from the
    label, so a reading can never say "agree" while meaning something else."""

    label = forms.ChoiceField(
        choices=LABEL_CHOICES,
        widget=forms.RadioSelect,
        label="Your reading",
        error_messages={"required": "Choose the label you read: normal, benign or malignant."},
    )
    comment = forms.CharField(
        required=False, max_length=2000, widget=forms.Textarea(attrs={"rows": 3}), label="Comment"
    )
    kind = forms.ChoiceField(
        required=False,
        choices=Review.Kind.choices,
        label="This reading is",
        help_text="The study has one signed report; another reader records a second opinion.",
    )
    # Offered from this study's current readings only; the service checks again on save.
    supersedes = forms.TypedChoiceField(
        required=False,
        coerce=int,
        empty_value=None,
        label="Amends",
        choices=[("", "nothing: a new reading")],
        error_messages={
            "invalid_choice": "That reading was amended already; reload the page and amend the latest one."
        },
    )

    def __init__(self, *args: Any, correctable: Sequence[Review] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        supersedes = cast(forms.TypedChoiceField, self.fields["supersedes"])
        if correctable:
            supersedes.choices = [
                ("", "nothing: a new reading"),
                *(
                    (
                        r.pk,
                        f"the {'report' if r.is_report else 'second opinion'} by {r.reviewer} "
                        f"({r.get_label_display()}, {r.created_at:%Y-%m-%d})",
                    )
                    for r in correctable
                ),
            ]
        else:
            supersedes.widget = forms.HiddenInput()

    def clean_kind(self) -> str:
        return self.cleaned_data.get("kind") or Review.Kind.REPORT


class AddendumForm(forms.Form):
    """Text added to a study's signed report: appended with who and when, never edited."""

    text = forms.CharField(
        max_length=4000,
        widget=forms.Textarea(attrs={"rows": 3}),
        label="Addendum",
        error_messages={"required": "Write the addendum's text."},
    )


class CompareForm(forms.Form):
    """Two different studies of one patient, chosen from that patient's studies."""

    a = forms.TypedChoiceField(coerce=int, label="Study")
    b = forms.TypedChoiceField(coerce=int, label="compared with")

    def __init__(self, *args: Any, studies: Sequence[Scan], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.studies = {scan.pk: scan for scan in studies}
        choices = [(scan.pk, f"{scan.study_date} ({len(scan.slices.all())} slices)") for scan in studies]
        for name in ("a", "b"):
            cast(forms.TypedChoiceField, self.fields[name]).choices = choices

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if "a" in data and "b" in data:
            if data["a"] == data["b"]:
                raise forms.ValidationError("Choose two different studies to compare.")
            data["a"], data["b"] = self.studies[data["a"]], self.studies[data["b"]]
        return data

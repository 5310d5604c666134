from django.apps import AppConfig


class CasesConfig(AppConfig):
    name = "cases"
    verbose_name = "Clinical cases"

    def ready(self) -> None:
        # Passwords are changed and users disabled by Django's own views, admin and commands as
        # well as ours: User's save signals are the one hook every such path goes through, so the
        # password check and the revocation of tokens and sessions live there.
        from . import receivers  # noqa: F401

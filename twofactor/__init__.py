"""A second factor (TOTP, with django-otp) for staff, who see every care team.

Owns enrolment, the verify page after a password login, the middleware that holds an unverified
staff session at those pages, and the check that the API's token endpoint makes for staff.
Depends on `audit` and `core` only; `cases` calls `services` for the API's token check.
"""

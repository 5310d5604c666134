"""The clinical record: care teams, patients, scans, slices, predictions and reviews.

Reads for a user go through `selectors` (the one place that scopes by care team), writes through
`services`; views, the API and tasks stay thin. Imports `inference` and `core`, never the project package.
"""

"""The REST API under /api/v1/: thin DRF views over the same selectors and services as the pages."""

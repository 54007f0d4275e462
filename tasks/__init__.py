"""Celery task bodies: thin wrappers that call ``web.services`` functions with ids."""

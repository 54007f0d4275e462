"""Domain services: plain functions over the models, testable without Flask requests or Celery."""

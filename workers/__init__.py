"""The Celery side: app wiring (celery_app), settings (config), signals and the entry (main)."""

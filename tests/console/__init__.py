"""Tests of the admin console (web/console)."""

"""The beat schedule as data; task names are strings, so nothing here imports app code."""

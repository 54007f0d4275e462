"""The PyQt5 station app (operators' line PCs); it talks to the server over HTTP only."""

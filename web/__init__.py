"""scribewatch web: the daemon's HTTP application."""

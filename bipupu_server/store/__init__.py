"""SQL only: every query of the server lives in this package, parameterised, knowing nothing of HTTP."""

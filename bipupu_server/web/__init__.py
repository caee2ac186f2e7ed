"""The HTTP edge: parse and validate requests, call the domain, shape responses."""

"""One request's lifecycle: the request (superglobals, headers, output) and its session."""

"""Ways to serve requests: script runner, CGI, FastCGI pool, HTTP server, WSGI. Process and socket I/O."""

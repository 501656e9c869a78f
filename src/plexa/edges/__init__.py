"""The edges: the command line, the terminal UI and the client; thin layers over the Python API."""

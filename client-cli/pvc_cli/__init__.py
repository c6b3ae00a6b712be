"""The ``pvc`` command-line client: renders the common library's operations for a terminal."""

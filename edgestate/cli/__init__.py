"""The ``edgestate`` command line."""

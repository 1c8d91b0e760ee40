"""edgestate: a local-first state service for WebAssembly at the edge."""

__version__ = "0.1.0"

"""Licence- and provenance-aware data governance: the core.

The core never imports a web framework or a CLI framework; `governance.cli` (typer) and
`governance.client` (httpx) are the two edge modules that may.
"""

__version__ = "0.1.0"

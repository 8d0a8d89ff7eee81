"""The command-line interface: parses options, calls the library, maps errors to exit codes."""

__all__ = []

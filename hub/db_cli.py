"""Placeholder: commands are added by the module owner."""


def register(subparsers) -> None:
    """No commands yet."""

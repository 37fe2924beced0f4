"""asyncray.util: Ray's utility surface. Placement groups and the rest come with their issues."""
from __future__ import annotations

from asyncray._private.api import list_named_actors

__all__ = ["list_named_actors"]

"""Parameter checks a sampler runs when it is built (from config, at validation time)."""

from __future__ import annotations


def require_ints(component, names: tuple[str, ...], minimum: int = 1, kind: str = "sampler") -> None:
    """Each of ``component``'s fields ``names`` is an integer ``>= minimum``; else ``ValueError``
    naming the key (``sampler.K: must be an integer >= 1 (got 0)``), which validation prefixes with
    the method's config path."""
    for name in names:
        v = getattr(component, name)
        if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
            raise ValueError(f"{kind}.{name}: must be an integer >= {minimum} (got {v!r})")

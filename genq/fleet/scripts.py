"""Running the fleet's Lua scripts, alone or queued on a pipeline.

redis-py's pipeline runs a registered script as EVALSHA and, before every ``execute`` that
holds one, asks ``SCRIPT EXISTS`` in a round trip of its own (``Pipeline.load_scripts``): a
pipeline with a script costs two round trips. Queued here, a script goes as EVAL with its text
(Redis caches it by its digest; a few hundred bytes more on the wire), so the pipeline stays one
round trip and needs no script to be loaded first, not even after Redis restarted.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from redis.commands.core import Script

__all__ = ["run_script"]


def run_script(script: Script, keys: Sequence[Any], args: Sequence[Any], pipe: Any = None) -> Any:
    """Run ``script`` now (EVALSHA, loading it once if Redis lacks it) and return its result,
    or, with ``pipe``, queue it on the pipeline (its result comes from the execute)."""
    if pipe is None:
        return script(keys=list(keys), args=list(args))
    return pipe.eval(script.script, len(keys), *keys, *args)

"""The fleet's Lua scripts on a pipeline (``genq.fleet.scripts``): one round trip, and no
script that has to be loaded first, even right after Redis lost its script cache."""

from __future__ import annotations

import redis

from genq.fleet.scripts import run_script

_INCR_BY = "return redis.call('INCRBY', KEYS[1], ARGV[1])"


def _calls(client: redis.Redis, command: str) -> int:
    stats = client.info("commandstats")
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


def test_a_script_on_a_pipeline_costs_no_round_trip_of_its_own(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    script = client.register_script(_INCR_BY)
    client.config_resetstat()
    client.script_flush()  # as after a restart: the script is not loaded
    pipe = client.pipeline(transaction=False)
    pipe.set("n", 1)
    run_script(script, ["n"], [4], pipe)
    pipe.get("n")
    assert pipe.execute() == [True, 5, b"5"]
    assert _calls(client, "script|exists") == 0  # redis-py's own pipeline path asks first
    assert _calls(client, "evalsha") == 0 and _calls(client, "eval") == 1
    client.close()


def test_a_script_run_alone_returns_its_result(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    script = client.register_script(_INCR_BY)
    client.script_flush()
    assert run_script(script, ["m"], [2]) == 2
    assert run_script(script, ["m"], [3]) == 5
    client.close()


def test_redis_py_still_asks_before_a_pipeline_with_a_registered_script(redis_url: str) -> None:
    """Why ``run_script`` exists: if redis-py stops asking SCRIPT EXISTS before a pipeline that
    holds a registered script, this fails and the helper can go."""
    client = redis.Redis.from_url(redis_url)
    script = client.register_script(_INCR_BY)
    client.config_resetstat()
    pipe = client.pipeline(transaction=False)
    script(keys=["k"], args=[1], client=pipe)
    pipe.execute()
    assert _calls(client, "script|exists") == 1
    client.close()

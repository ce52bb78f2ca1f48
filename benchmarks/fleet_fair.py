"""Fair share and adaptive slots benchmark (issue 13), through the real stack: a Redis, a worker
process with the fleet's dispatcher, fake runtimes over real HTTP.

  * fairness: four tenants, every one backlogged from the start, on one 4-slot endpoint. Tokens
    served to each while all four still had work waiting (each job counted pro rata of its
    running time inside that window): Jain's index with equal weights and jobs asking
    16/64/256/64 tokens (target >= 0.95); with weights 1:2:3:4 and 64-token jobs, each tenant's
    share against its weight's (target: within 10 %).
  * adaptive: an endpoint whose throughput saturates at 4 streams (the fake's true_parallelism):
    tokens/s at fixed slots 1..8 (the sweep), then with slots = "auto" from 1 (max 8): the slots
    it settles at, and its tokens/s once learnt against the best fixed (target >= 0.9).

Run: ``python -m benchmarks fleet_fair`` (``make bench`` runs it with the others).
"""

from __future__ import annotations

import collections
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import redis

from benchmarks.core import fake_runtime
from benchmarks.stats import median
from genq.fleet.adaptive import AdaptiveSlots
from genq.settings import Settings
from producers import GenqClient
from schemas import JobRecord, JobStatus
from tests.support import GenqProcess, ManagedProcess, RedisServer

ROUNDS = 3
FAIR_SLOTS = 4
FAIR_TOKEN_SECONDS = 0.002
DEMANDS = {"t16": 16, "t64a": 64, "t256": 256, "t64b": 64}  # tokens each tenant's jobs ask
WEIGHTS = {"w1": 1, "w2": 2, "w3": 3, "w4": 4}
TOKENS_PER_TENANT = 2048  # each tenant's backlog, so none runs dry long before the others

KNEE = 4
MAX_SLOTS = 8
KNEE_TOKENS = 24
KNEE_TOKEN_SECONDS = 0.05
AUTO_JOBS = 160
AUTO_RUNS = 3


def chat(model: str, tokens: int, i: int) -> dict[str, Any]:
    return {
        "model": model,
        "messages": [{"role": "user", "content": f"job {i}"}],
        "max_tokens": tokens,
    }


class FleetFile:
    """The fleet's TOML file; workers re-read it when it changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.endpoints: dict[str, tuple[str, list[str], int | str]] = {}

    def set(self, name: str, url: str, models: list[str], slots: int | str) -> None:
        self.endpoints[name] = (url, models, slots)
        lines = []
        for ep, (ep_url, ep_models, ep_slots) in self.endpoints.items():
            shown = f'"{ep_slots}"' if isinstance(ep_slots, str) else str(ep_slots)
            names = ", ".join(f'"{m}"' for m in ep_models)
            lines += ["[[endpoints]]", f'name = "{ep}"', 'kind = "openai"', f'url = "{ep_url}"']
            lines += [f"models = [{names}]", f"slots = {shown}", ""]
        self.path.write_text("\n".join(lines))
        time.sleep(0.05)  # a new mtime, so every process reloads it


def finished(record: JobRecord) -> tuple[float, float]:
    assert record.started_at is not None and record.finished_at is not None
    return record.started_at.timestamp(), record.finished_at.timestamp()


def served_while_all_waited(records: list[JobRecord]) -> dict[str, float]:
    """Tokens each tenant was served from the last submission (all backlogs full) until the
    first tenant's last job started (its backlog ran dry); a job counts pro rata of its
    running time inside that window."""
    last_start: dict[str, float] = collections.defaultdict(float)
    for r in records:
        last_start[r.tenant] = max(last_start[r.tenant], finished(r)[0])
    start = max(r.created_at.timestamp() for r in records)
    cut = min(last_start.values())
    if cut <= start:
        raise RuntimeError("a tenant ran dry before the last job was submitted: no saturation")
    served: dict[str, float] = dict.fromkeys(last_start, 0.0)
    for r in records:
        began, ended = finished(r)
        tokens = (r.usage.completion_tokens if r.usage else 0) or 0
        inside = max(0.0, min(ended, cut) - max(began, start))
        served[r.tenant] += tokens * (inside / (ended - began) if ended > began else 0.0)
    return served


def jain(values: list[float]) -> float:
    return sum(values) ** 2 / (len(values) * sum(v * v for v in values))


def run_jobs(
    clients: dict[str, GenqClient], plan: dict[str, list[dict[str, Any]]], chunks: int = 8
) -> list[JobRecord]:
    """Submit each tenant's jobs in ``chunks`` rounds, a transaction per tenant and round (so
    every tenant is backlogged within moments, and its backlog keeps growing at its share);
    every job's final record."""
    ids = []
    for n in range(chunks):
        for tenant, jobs in plan.items():
            part = jobs[n * len(jobs) // chunks : (n + 1) * len(jobs) // chunks]
            ids += [(tenant, r.id) for r in clients[tenant].submit_many(part)] if part else []
    records = [clients[tenant].wait(job_id, timeout=900) for tenant, job_id in ids]
    bad = [r.id for r in records if r.status is not JobStatus.SUCCEEDED]
    if bad:
        raise RuntimeError(f"{len(bad)} benchmark jobs did not succeed, e.g. {bad[0]}")
    return records


def fairness_round(
    clients: dict[str, GenqClient], fleet: FleetFile, url: str, n: int
) -> dict[str, Any]:
    equal_model, weighted_model = f"m-equal-{n}", f"m-weighted-{n}"
    fleet.set("fair", url, [equal_model, weighted_model], FAIR_SLOTS)
    equal = {
        t: [chat(equal_model, d, i) for i in range(TOKENS_PER_TENANT // d)]
        for t, d in DEMANDS.items()
    }
    served = served_while_all_waited(run_jobs(clients, equal))
    weight_jobs = {  # backlogs in proportion to the weights: all run dry together when fair
        t: [chat(weighted_model, 64, i) for i in range(12 * w)] for t, w in WEIGHTS.items()
    }
    weighted = served_while_all_waited(run_jobs(clients, weight_jobs))
    total = sum(weighted.values())
    shares = {t: weighted[t] / total / (WEIGHTS[t] / sum(WEIGHTS.values())) for t in WEIGHTS}
    return {
        "jain": jain(list(served.values())),
        "served": {t: round(v) for t, v in served.items()},
        "share_vs_weight": {t: round(v, 3) for t, v in shares.items()},
        "worst_share_error": max(abs(v - 1) for v in shares.values()),
    }


def tokens_per_second(records: list[JobRecord]) -> float:
    spans = [finished(r) for r in records]
    tokens = sum((r.usage.completion_tokens if r.usage else 0) or 0 for r in records)
    return tokens / (max(e for _, e in spans) - min(s for s, _ in spans))


def adaptive(
    clients: dict[str, GenqClient], fleet: FleetFile, url: str, redis_url: str
) -> dict[str, Any]:
    client = clients["knee"]
    sweep = {}
    for slots in range(1, MAX_SLOTS + 1):
        model = f"m-fixed-{slots}"
        fleet.set("knee", url, [model], slots)
        jobs = [chat(model, KNEE_TOKENS, i) for i in range(8 * min(slots, KNEE) + 8)]
        sweep[slots] = tokens_per_second(run_jobs({"knee": client}, {"knee": jobs}))
    best_slots = max(sweep, key=lambda s: sweep[s])
    runs = []
    for n in range(AUTO_RUNS):
        name, model = f"knee-auto-{n}", f"m-auto-{n}"
        fleet.set(name, url, [model], "auto")
        jobs = [chat(model, KNEE_TOKENS, i) for i in range(AUTO_JOBS)]
        records = run_jobs({"knee": client}, {"knee": jobs})
        records.sort(key=lambda r: finished(r)[0])
        learnt = tokens_per_second(records[len(records) // 2 :])  # the second half of the starts
        state = AdaptiveSlots(redis.Redis.from_url(redis_url), name, MAX_SLOTS).controller()
        settled = collections.Counter(state.history[-8:]).most_common(1)[0][0]
        runs.append(
            {
                "history": state.history,
                "settled_slots": settled,
                "tokens_per_s_learnt": learnt,
                "tokens_per_s_whole_run": tokens_per_second(records),
            }
        )
        fleet.endpoints.pop(name)
    return {
        "knee": KNEE,
        "sweep_tokens_per_s": {k: round(v, 1) for k, v in sweep.items()},
        "best_fixed_slots": best_slots,
        "auto_runs": runs,
        "settled_slots_median": median([r["settled_slots"] for r in runs]),
        "ratio_learnt_vs_best_fixed": median([r["tokens_per_s_learnt"] for r in runs])
        / sweep[best_slots],
        "ratio_whole_run_vs_best_fixed": median([r["tokens_per_s_whole_run"] for r in runs])
        / sweep[best_slots],
    }


def fake_process(tmp: Path, name: str, **config: Any) -> tuple[ManagedProcess, str]:
    """A fake runtime in a process of its own (its pacing does not share our GIL)."""
    (tmp / name).mkdir()
    process, url = fake_runtime(tmp / name)
    httpx.post(f"{url}/_fake/config", json=config, timeout=10).raise_for_status()
    return process, url


def main() -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="genq-bench-fleet-fair-") as tmp_name:
        tmp = Path(tmp_name)
        fair_models = [f"m-{kind}-{n}" for kind in ("equal", "weighted") for n in range(ROUNDS)]
        knee_models = [f"m-fixed-{n}" for n in range(1, MAX_SLOTS + 1)]
        knee_models += [f"m-auto-{n}" for n in range(AUTO_RUNS)]
        fair_fake, fair_url = fake_process(
            tmp,
            "fair",
            tokens=["t"] * 256,
            token_delay_seconds=FAIR_TOKEN_SECONDS,
            known_models=fair_models,
        )
        knee_fake, knee_url = fake_process(
            tmp,
            "knee",
            tokens=["t"] * KNEE_TOKENS,
            token_delay_seconds=KNEE_TOKEN_SECONDS,
            true_parallelism=KNEE,
            known_models=knee_models,
        )
        with RedisServer(tmp / "redis") as server, fair_fake, knee_fake:
            fleet = FleetFile(tmp / "runtimes.toml")
            fleet.set("fair", fair_url, ["m-equal-0"], FAIR_SLOTS)
            env = {
                "GENQ_REDIS_URL": server.url,
                "GENQ_DATA_DIR": str(tmp / "data"),
                "GENQ_RUNTIMES_FILE": str(fleet.path),
                "GENQ_TENANT_WEIGHTS": ",".join(f"{t}={w}" for t, w in WEIGHTS.items()),
                "GENQ_ADAPTIVE_MAX_SLOTS": str(MAX_SLOTS),
                "GENQ_FLEET_TICK_SECONDS": "0.2",
                "GENQ_LOG_LEVEL": "WARNING",
            }
            settings = Settings(**{k[5:].lower(): v for k, v in env.items()})
            tenants = [*DEMANDS, *WEIGHTS, "knee"]
            clients = {t: GenqClient(settings, tenant=t) for t in tenants}
            worker = GenqProcess(
                ["worker", "--concurrency", str(MAX_SLOTS)],
                {**env, "GENQ_LOG_LEVEL": "INFO"},  # it logs "ready." at INFO
                tmp / "worker.log",
            ).start()
            try:
                worker.wait_for_log("ready.", timeout=60)
                rounds = [fairness_round(clients, fleet, fair_url, n) for n in range(ROUNDS)]
                adaptive_result = adaptive(clients, fleet, knee_url, server.url)
            finally:
                worker.stop()
                for client in clients.values():
                    client.close()
    result = {
        "fairness": {
            "jain_equal_weights_median": median([r["jain"] for r in rounds]),
            "worst_share_error_weighted_median": median([r["worst_share_error"] for r in rounds]),
            "rounds": rounds,
        },
        "adaptive": adaptive_result,
    }
    _print(result)
    return result


def _print(result: dict[str, Any]) -> None:
    fair, auto = result["fairness"], result["adaptive"]
    jain_index = fair["jain_equal_weights_median"]
    share_error = fair["worst_share_error_weighted_median"]
    print("fleet fair share (4 tenants, one 4-slot endpoint, saturated):")
    print(f"  Jain's index, equal weights, 16/64/256/64 tokens: {jain_index:.3f} (target >= 0.95)")
    print(f"  weights 1:2:3:4, worst share vs its weight: {share_error:.1%} (target <= 10%)")
    print(f"adaptive slots (a runtime saturating at {auto['knee']} streams):")
    print(f"  sweep tokens/s by fixed slots: {auto['sweep_tokens_per_s']}")
    print(
        f"  auto settled at {auto['settled_slots_median']} slots; learnt tokens/s vs the best"
        f" fixed ({auto['best_fixed_slots']} slots): {auto['ratio_learnt_vs_best_fixed']:.2f}"
        f" (target >= 0.9); whole run, ramp from 1 included:"
        f" {auto['ratio_whole_run_vs_best_fixed']:.2f}"
    )


if __name__ == "__main__":
    print(json.dumps(main(), indent=1, default=str))

"""`GET /healthz` on the stream server (`--stream`): whether the run is healthy, as JSON, for a supervisor, a
load balancer's probe or a dashboard.

    200 {"healthy": true, "uptime_s": 86400.1, "fps": 29.9, "last_frame_age_s": 0.04, "frames": 2584000,
         "failed_frames": 0, "reconnects": 1, "stalls": 1, "inference_hangs": 0, "dropped_events": 0,
         "events": {"mqtt": {"delivered": 812, "queued": 0, "dropped": 0, "reconnects": 1, ...}},
         "model": "edgedet-n-320-int8.tflite", "source": "camera 0", "stall_timeout_s": 20.0,
         "hourly": [{"hour": "2025-05-01T13:00Z", "stalls": 0, "reconnects": 0, "inference_hangs": 0,
                     "failed_frames": 0, "dropped_events": 0}, ...]}
    503 the same with "healthy": false, once the last frame is older than --stall-timeout

The document is a subset of the run's status (`Runner.status()`, which the status page shows too).
"""
from __future__ import annotations

import json
from typing import Dict, Sequence, Tuple

# the keys of the run's status that /healthz returns
HEALTH_KEYS = ("uptime_s", "fps", "last_frame_age_s", "frames", "failed_frames", "reconnects", "stalls",
               "inference_hangs", "dropped_events", "events", "model", "source", "stall_timeout_s", "hourly")


def event_stats(sinks: Sequence) -> Dict[str, dict]:
    """{"mqtt": {...}, "webhook": {...}, ...}: the `stats()` of every sink that has counters (the event sinks)."""
    stats = {}
    for sink in sinks:
        counters = sink.stats() if callable(getattr(sink, "stats", None)) else None
        if counters:
            stats[type(sink).__name__.removesuffix("Sink").lower()] = counters
    return stats


def dropped_events(stats: Dict[str, dict]) -> int:
    """Events dropped by all event sinks together (their bounded queues overflowed)."""
    return sum(int(counters.get("dropped", 0)) for counters in stats.values())


def health(status: dict) -> Tuple[int, dict]:
    """(HTTP status, document) of a run's status: 200 while frames come out, 503 once the last one is older than
    the stall timeout."""
    healthy = status["last_frame_age_s"] <= status["stall_timeout_s"]
    return (200 if healthy else 503), {"healthy": healthy, **{key: status[key] for key in HEALTH_KEYS if key in status}}


def health_response(status: dict) -> Tuple[int, str, bytes]:
    """(HTTP status, content type, body) of /healthz."""
    code, document = health(status)
    return code, "application/json", json.dumps(document).encode()

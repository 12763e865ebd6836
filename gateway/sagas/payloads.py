"""What each operation sends, built from the saga's context and the results of earlier
steps. One table, so the forward call, its compensation and a replay after a crash send the
same body."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Json = dict[str, Any]


def _identity(ctx: Json) -> Json:
    return {"gate_id": ctx.get("gate_id", ""), "lane_id": ctx.get("lane_id", "")}


def _verify(ctx: Json, results: dict[str, Json]) -> Json:
    body = {**_identity(ctx), "direction": ctx.get("kind", "entry"),
            "license_plate": ctx.get("license_plate") or None,
            "captured_at": ctx.get("captured_at")}
    if body["license_plate"] and ctx.get("reading_source"):
        # whose reading it is, so the central service knows how far to trust the hint
        body["reading_source"] = ctx["reading_source"]
        body["reading_confidence"] = round(float(ctx.get("plate_confidence") or 0.0), 3)
    if ctx.get("image_jpeg_b64"):
        body["image_jpeg_b64"] = ctx["image_jpeg_b64"]
    return {k: v for k, v in body.items() if v is not None}


def _plate(ctx: Json, results: dict[str, Json]) -> str:
    verified = results.get("verify_license_plate", {}).get("license_plate")
    return str(verified or ctx.get("license_plate") or "")


def _allocate(ctx: Json, results: dict[str, Json]) -> Json:
    return {"license_plate": _plate(ctx, results), "lane_id": ctx.get("lane_id", ""),
            "reason": results.get("verify_license_plate", {}).get("reason"),
            "wants_kind": ctx.get("wants_kind")}


def _local_plate(ctx: Json, results: dict[str, Json]) -> Json:
    return {"license_plate": _plate(ctx, results)}


def _entry(ctx: Json, results: dict[str, Json]) -> Json:
    return {"saga_id": ctx["saga_id"], "license_plate": _plate(ctx, results), **_identity(ctx),
            "space_id": results.get("allocate_parking_space", {}).get("space_id"),
            "occurred_at": ctx.get("created_at")}


def _exit(ctx: Json, results: dict[str, Json]) -> Json:
    vacate = results.get("release_parking_space", {})
    return {"saga_id": ctx["saga_id"], "license_plate": _plate(ctx, results), **_identity(ctx),
            "space_id": vacate.get("space_id"), "entry_id": vacate.get("entry_id"),
            "occurred_at": ctx.get("created_at")}


def _cancel_entry(ctx: Json, results: dict[str, Json]) -> Json:
    return {**_entry(ctx, results),
            "entry_id": results.get("create_entry_record", {}).get("entry_id")}


def _cancel_exit(ctx: Json, results: dict[str, Json]) -> Json:
    return {**_exit(ctx, results),
            "exit_id": results.get("create_exit_record", {}).get("exit_id")}


def _gate(ctx: Json, results: dict[str, Json]) -> Json:
    return {**_identity(ctx), "saga_id": ctx["saga_id"], "license_plate": _plate(ctx, results),
            "behaviour": ctx.get("behaviour", "pass")}


BUILDERS: dict[str, Callable[[Json, dict[str, Json]], Json]] = {
    "verify_license_plate": _verify,
    "allocate_parking_space": _allocate,
    "release_parking_space": _local_plate,
    "vacate_parking_space": _local_plate,
    "reoccupy_parking_space": _local_plate,
    "create_entry_record": _entry,
    "cancel_entry_record": _cancel_entry,
    "create_exit_record": _exit,
    "cancel_exit_record": _cancel_exit,
    "open_barrier": _gate,
    "confirm_passage": _gate,
}


def build(operation: str, step_name: str, ctx: Json, results: dict[str, Json]) -> Json:
    """The body of ``operation``; a step's explicit ``request_data`` (seed API) wins."""
    builder = BUILDERS.get(operation)
    body = builder(ctx, results) if builder else {"license_plate": _plate(ctx, results)}
    overrides = ctx.get("request_data", {}).get(step_name)
    if overrides:
        body.update(overrides)
    return body


def reading_used(ctx: Json, result: Json, source: str) -> Json:
    """Which reading a decision went by, and how sure it was: the central service's own
    (it read the image, or read another plate than the hint), else the hint's source
    (``camera``, ``local``) with its confidence."""
    hint = str(ctx.get("license_plate") or "")
    verified = str(result.get("license_plate") or hint)
    if source == "central" and (not hint or verified != hint):
        return {"source": "central", "confidence": result.get("confidence"),
                "plate": verified}
    return {"source": ctx.get("reading_source") or ("camera" if hint else "none"),
            "confidence": ctx.get("plate_confidence"), "plate": hint or None}

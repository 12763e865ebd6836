"""Which plate a lane goes by for one burst: the camera's own reading (an ANPR camera), the
gate's reader (``gateway.plates``) for a plain camera, or none (the image alone goes to the
central service, which reads it when it answers).

A local reading below ``plates.min_confidence`` comes back as no plate: unreadable, so the
policy decides when nothing else can read it — never taken for another plate. With an ANPR
camera the gate reads the burst too (``plates.compare_anpr``) and a disagreement is an
event; the camera's reading is still the one used."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gateway.plates.reader import PlateReader, Reading
from gateway.plates.roi import Roi
from hardware.camera import Shot

Json = dict[str, Any]


@dataclass(frozen=True)
class ShotReading:
    plate: str | None
    confidence: float
    source: str  # "camera" | "local" | "" (none: the image alone)
    local: Reading | None = None
    events: list[tuple[str, Json]] = field(default_factory=list)


async def reading_for(shot: Shot, reader: PlateReader | None, roi: Roi | None, *,
                      compare_anpr: bool) -> ShotReading:
    camera = ShotReading(shot.plate, shot.confidence, "camera") if shot.plate else None
    if reader is None or not reader.ready or not shot.frames or (
            camera is not None and not compare_anpr):
        return camera or ShotReading(None, 0.0, "")
    local = await reader.read_burst(shot.frames, roi)
    read: Json = {"source": "local", "license_plate": local.plate,
                  "confidence": round(local.confidence, 3), "frames": local.frames,
                  "latency_ms": round(local.latency_ms, 1)}
    if local.error:
        read["error"] = local.error
    events: list[tuple[str, Json]] = [("local_reading", read)]
    if camera is not None:
        if local.plate and local.plate != camera.plate:
            events.append(("reading_disagreement", {
                "camera": camera.plate, "camera_confidence": round(camera.confidence, 3),
                "local": local.plate, "local_confidence": round(local.confidence, 3)}))
        return ShotReading(camera.plate, camera.confidence, "camera", local, events)
    if local.plate:
        return ShotReading(local.plate, local.confidence, "local", local, events)
    return ShotReading(None, 0.0, "", local, events)

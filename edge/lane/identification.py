"""Identifying the vehicle of a passage: RFID e-card, weighbridge, camera reads, e-seals.

Each source has its own physical deadline; whatever does not answer in time is left out and
the identity goes to the platform with what was read (an officer sees an identification
exception rather than a lane stuck in IDENTIFYING). The plates registered with the vehicle's
e-card (the signed ``expected_vehicles`` command) stand in for a camera read when there is none, flagged by a
lower confidence; a camera read that equals a registered plate is confirmed by the e-card
(``registration_support``: exact equality only, never the nearest registered plate). The seals
on the vehicle are read once it is in position (cargo lanes with a seal reader); the seal ids
its declaration names come with its registration (``seals``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections import deque
from collections.abc import Callable, Mapping, Sequence

from portlane.drivers.base import Frame, TagRead
from portlane.drivers.cargo_devices import SealRecord
from portlane.drivers.errors import DeviceError
from portlane.edge.contract.events import ContainerRead, PlateRead
from portlane.edge.contract.vocabulary import LOW_CONFIDENCE
from portlane.models.fusion import fuse_containers, fuse_plates
from portlane.models.grammar import PlateRead as ModelPlateRead
from portlane.models.grammar import classify, normalise
from portlane.models.iso6346 import ContainerRead as ModelContainerRead

from .devices import LaneDevices
from .passage import Identity
from .recognition import Recogniser, containers_of, plate_kind, plates_of

__all__ = [
    "Identifier",
    "container_exceptions",
    "identity_exceptions",
    "lane_verdict",
    "plate_exceptions",
    "plate_read",
    "registration_support",
]

log = logging.getLogger(__name__)

#: An RFID read at 7–10 m takes < 0.5 s; a loaded weighbridge settles within 2–3 s of the truck
#: stopping. A tag read more than this before the arrival belongs to the previous vehicle.
RFID_WAIT_S = 1.5
WEIGH_WAIT_S = 4.0
#: The reader sees a vehicle queueing behind the one in the lane: a tag read up to this long
#: before the arrival may be the arriving vehicle's, unless an earlier passage already took it.
TAG_BEFORE_ARRIVAL_S = 300.0
#: Tag reads and assigned tags remembered (a few vehicles' worth).
TAG_MEMORY = 16
#: The e-card's registered plates stand in for a camera read with this confidence.
REGISTERED_PLATE_CONFIDENCE = 0.9
#: A camera read that equals a plate registered with the e-card read at the lane: two independent
#: sources agree (a doubtful province or a single frame is then confirmed).
REGISTERED_AGREEMENT_CONFIDENCE = 0.95
#: Between RFID polls when the reader is offline or failed.
RFID_RETRY_S = 0.2
RFID_READ_TIMEOUT_S = 5.0


def plate_read(text: str, confidence: float) -> PlateRead:
    """A plate text the lane did not read itself (registration, officer's correction)."""
    return PlateRead(text=text, kind=plate_kind(classify(text)), confidence=confidence)


def plate_exceptions(
    plates: Sequence[PlateRead], confidence: float, *, registrations: Mapping[str, tuple[str, ...]]
) -> list[str]:
    """The plates' part of :func:`identity_exceptions`."""
    exc: list[str] = []
    if not plates:
        exc.append("unreadable_plate")
    elif confidence < LOW_CONFIDENCE:
        exc.append("low_confidence")
    kinds = {r.kind for r in plates}
    if "cn_crossborder" in kinds and kinds & {"hk", "macau"}:
        # compared as plates, not as strings: a Macau plate is written MX-12-34 or MX1234
        texts = tuple(sorted(normalise(r.text) for r in plates))
        registered = {tuple(sorted(normalise(t) for t in v)) for v in registrations.values()}
        if registrations and texts not in registered:
            exc.append("dual_plate_mismatch")
    elif "cn_crossborder" in kinds:
        # a 粤Z…港/澳 plate always travels with its Hong Kong or Macau plate: both must be read
        exc.append("dual_plate_incomplete")
    return exc


def container_exceptions(containers: Sequence[ContainerRead]) -> list[str]:
    """The containers' part of :func:`identity_exceptions`: a number whose check digit fails, or
    one the recogniser did not confirm (its wire confidence is then at most 0.5), goes to an
    officer — the check digit alone is a 1-in-10 guard."""
    exc: list[str] = []
    if any(not c.check_digit_ok for c in containers):
        exc.append("check_digit_failed")
    if any(c.confidence < LOW_CONFIDENCE for c in containers):
        exc.append("low_confidence")
    return exc


def identity_exceptions(identity: Identity, *, registrations: Mapping[str, tuple[str, ...]]) -> tuple[str, ...]:
    """Exceptions an officer must look at (ordinary operations, not errors)."""
    exc: list[str] = [e for e in identity.exceptions]
    exc += plate_exceptions(identity.plates, identity.confidence, registrations=registrations)
    exc += container_exceptions(identity.containers)
    return tuple(dict.fromkeys(exc))


def lane_verdict(reads: Sequence[ModelPlateRead | ModelContainerRead], kind: str) -> tuple[list[str], list[str]]:
    """What the lane makes of one vehicle's reads from images alone (no e-card, no declaration):
    the identities its recogniser sends (``plates_of``/``containers_of`` over ``models.fusion``)
    and the exceptions these rules raise for them; ``kind`` "plate" or "container" says which
    part of the identity is judged. ``portlane ocr eval --by-vehicle`` uses it."""
    if kind == "container":
        boxes = containers_of(fuse_containers(r for r in reads if isinstance(r, ModelContainerRead)))
        return [c.number for c in boxes], container_exceptions(boxes)
    plates = plates_of(fuse_plates(r for r in reads if isinstance(r, ModelPlateRead)))
    conf = min((p.confidence for p in plates), default=0.0)
    return [p.text for p in plates], plate_exceptions(plates, conf, registrations={})


def registration_support(plates: Sequence[PlateRead], registered: Sequence[str]) -> tuple[PlateRead, ...]:
    """Plate reads the vehicle's e-card vouches for: a read whose text *is* one of the plates
    registered with the tag read at the lane is confirmed by that independent source (its
    confidence raised to ``REGISTERED_AGREEMENT_CONFIDENCE``, its doubt cleared). Only exact
    equality counts: a read that differs from the registration in any character is left as it
    is — the lane never picks the nearest registered plate."""
    want = {normalise(t) for t in registered}
    return tuple(
        r.model_copy(update={"confidence": max(r.confidence, REGISTERED_AGREEMENT_CONFIDENCE), "doubt": None})
        if normalise(r.text) in want
        else r
        for r in plates
    )


class Identifier:
    def __init__(
        self,
        lane: str,
        devices: LaneDevices,
        *,
        recogniser: Recogniser | None,
        clock: Callable[[], float],
        deadline_s: float,
    ) -> None:
        self.lane = lane
        self.devices = devices
        self.recogniser = recogniser
        self.clock = clock
        self.deadline_s = deadline_s
        self.registrations: dict[str, tuple[str, ...]] = {}  # tag id -> registered plates (sorted)
        self.declared_seals: dict[str, tuple[str, ...]] = {}  # tag id -> seal ids declared for its trip
        self.reads: deque[TagRead] = deque(maxlen=TAG_MEMORY)
        self._assigned: deque[str] = deque(maxlen=TAG_MEMORY)
        self._tag_read = asyncio.Condition()

    def register(
        self, vehicles: Mapping[str, tuple[str, ...]], *, seals: Mapping[str, tuple[str, ...]] | None = None
    ) -> None:
        """The platform's registrations: plates per e-card, and the seals declared per e-card
        (only for vehicles whose declaration names seals)."""
        self.registrations = {tag: tuple(sorted(plates)) for tag, plates in vehicles.items()}
        self.declared_seals = {tag: tuple(ids) for tag, ids in (seals or {}).items()}

    async def rfid_reader(self) -> None:
        """Keep the last tag read (the reader pushes reads as vehicles approach)."""
        rfid = self.devices.rfid
        if rfid is None:
            return
        while True:
            if not rfid.connected:
                await asyncio.sleep(RFID_RETRY_S)
                continue
            try:
                read = await rfid.next_read(timeout=RFID_READ_TIMEOUT_S)
            except DeviceError:
                await asyncio.sleep(RFID_RETRY_S)
                continue
            if read is not None:
                async with self._tag_read:
                    self.reads.append(read)
                    self._tag_read.notify_all()

    async def identify(self, arrived: float) -> Identity:
        tag: str | None = None
        weight: int | None = None
        plates: list[PlateRead] = []
        containers: list[ContainerRead] = []
        seals: tuple[SealRecord, ...] | None = None
        seal_error: str | None = None

        def unassigned() -> TagRead | None:
            """The oldest recent read of a tag no earlier passage has taken: vehicles reach the
            lane in the order the reader saw them."""
            for r in self.reads:
                if r.ts >= arrived - TAG_BEFORE_ARRIVAL_S and r.tag_id not in self._assigned:
                    return r
            return None

        async def get_tag() -> None:
            nonlocal tag
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(RFID_WAIT_S), self._tag_read:
                    read = await self._tag_read.wait_for(unassigned)
                    tag = read.tag_id if read else None
                    if tag is not None:
                        self._assigned.append(tag)

        async def get_weight() -> None:
            nonlocal weight
            wb = self.devices.weighbridge
            if wb is None or not wb.connected:
                return
            with contextlib.suppress(DeviceError):
                weight = (await wb.wait_stable(WEIGH_WAIT_S)).kg

        container_frames = False

        async def get_reads() -> None:
            nonlocal container_frames
            if self.recogniser is None:
                return
            frames: dict[str, list[Frame]] = {"plate": [], "container": []}
            for name, cam in self.devices.cameras():
                if cam.connected:
                    with contextlib.suppress(DeviceError):
                        frames[self.devices.camera_role(name)].append(await cam.snapshot())
            container_frames = bool(frames["container"])

            async def read_plates() -> None:
                nonlocal plates
                if frames["plate"] and self.recogniser is not None:
                    plates = list(await self.recogniser.read_plates(frames["plate"]))

            async def read_containers() -> None:
                nonlocal containers
                if frames["container"] and self.recogniser is not None:
                    containers = list(await self.recogniser.read_containers(frames["container"]))

            # both kinds at once: a worker reading several frames at a time takes frames of both
            # (a task group: if one read fails, the other is cancelled, not left running)
            async with asyncio.TaskGroup() as reads:
                reads.create_task(read_plates(), name=f"{self.lane}:identify-plates")
                reads.create_task(read_containers(), name=f"{self.lane}:identify-containers")

        async def get_seals() -> None:
            nonlocal seals, seal_error
            reader = self.devices.seal_reader
            if reader is None:
                return
            if not reader.connected:
                seal_error = "seal reader offline"
                return
            try:
                seals = await reader.read_seals()
            except DeviceError as exc:
                seal_error = str(exc)[:200]

        try:
            async with asyncio.timeout(self.deadline_s):
                async with asyncio.TaskGroup() as tg:
                    tg.create_task(get_seals(), name=f"{self.lane}:identify-seals")
                    tg.create_task(get_tag(), name=f"{self.lane}:identify-tag")
                    tg.create_task(get_weight(), name=f"{self.lane}:identify-weight")
                    tg.create_task(get_reads(), name=f"{self.lane}:identify-reads")
        except TimeoutError:
            log.warning("%s: identification timed out; deciding on what was read", self.lane)
        if not plates and tag and tag in self.registrations:
            plates = [plate_read(t, REGISTERED_PLATE_CONFIDENCE) for t in self.registrations[tag]]
        elif tag and tag in self.registrations:
            plates = list(registration_support(plates, self.registrations[tag]))
            read = {normalise(r.text) for r in plates}
            registered = {normalise(t): t for t in self.registrations[tag]}
            if read < set(registered):
                # every plate read is one registered with the e-card: the card stands in for the
                # camera that did not read the other (a dual-plated car's partner plate)
                plates += [plate_read(t, REGISTERED_PLATE_CONFIDENCE) for n, t in registered.items() if n not in read]
        # The identity's confidence is its weakest plate read: containers are vouched for by
        # their check digit (a failing one is an exception of its own, check_digit_failed).
        conf = min((r.confidence for r in plates), default=0.0)
        if seals is None and seal_error is None and self.devices.seal_reader is not None:
            seal_error = f"no answer within the identification deadline ({self.deadline_s:.0f} s)"
        ident = Identity(
            plates=tuple(plates),
            containers=tuple(containers),
            tag_id=tag,
            weight_kg=weight,
            confidence=conf,
            seals=seals,
            seal_error=seal_error,
            declared_seals=self.declared_seals.get(tag) if tag else None,
        )
        exc = identity_exceptions(ident, registrations=self.registrations)
        if container_frames and not containers:
            # the container cameras saw the truck and no number was read: an officer checks the
            # box (or that the chassis is empty) rather than the lane passing it unidentified
            exc = (*exc, "unreadable_container")
        return dataclasses.replace(ident, exceptions=exc)

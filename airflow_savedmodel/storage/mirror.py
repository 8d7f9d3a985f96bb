"""Mirror a serving base path to another: every complete version the source has and the mirror
lacks is published there under the same number (verified, atomically, as any publish).

What to copy is decided from the two listings, not from which publish announced itself: Asset
events arrive batched and in any order, and a mirror that missed some (paused, failed, added
late) catches up on its next run.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

from airflow_savedmodel import location
from airflow_savedmodel.errors import SavedModelError, StorageError
from airflow_savedmodel.location import Location
from airflow_savedmodel.signing.keys import Trust
from airflow_savedmodel.storage import signed
from airflow_savedmodel.storage import versions as v
from airflow_savedmodel.storage.publish import PublishResult, publish


@dataclass
class MirrorResult:
    """What a mirror run did: versions published to the mirror, those it already held, and the
    source's versions it skipped because they are not complete there (a publish in flight)."""

    mirrored: list[PublishResult] = field(default_factory=list)
    present: list[int] = field(default_factory=list)
    skipped: dict[int, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "mirrored": [{"version": r.version, "uri": r.url} for r in self.mirrored],
            "present": self.present,
            "skipped": {str(k): reason for k, reason in self.skipped.items()},
        }


def mirror(
    src: Location,
    dst: Location,
    *,
    newest_only: bool = False,
    concurrency: int = 8,
    progress_for: Callable[[int], Any] | None = None,
    trust: Trust | None = None,
    versions: Collection[int] | None = None,
) -> MirrorResult:
    """Publish to ``dst`` every complete version of ``src`` that ``dst`` does not hold complete,
    oldest first, each under its own number (``newest_only``: only the newest complete one;
    ``versions``: only these numbers, e.g. those a validation step passed, so that a version
    completed after that step is left for the next run, not copied unchecked).

    A version that fails to mirror does not stop the others; the failures are raised together
    at the end, each with its version's URL. With ``trust``, a version that does not verify (a
    file changed, added or removed since it was signed, an untrusted signer) is refused, named
    among the failures; its signature travels with it to the mirror.
    """
    result = MirrorResult()
    source = v.versions_of(src.fs, src.path)
    if versions is not None:
        wanted = {int(n) for n in versions}
        source = [info for info in source if info.version in wanted]
    for info in source:
        if info.state != v.COMPLETE:
            result.skipped[info.version] = info.state
    complete = [info for info in source if info.state == v.COMPLETE]
    if newest_only:
        complete = complete[-1:]
    location.makedirs(dst.fs, dst.path)
    held = {info.version: info for info in v.versions_of(dst.fs, dst.path)}
    failures: list[str] = []
    for info in complete:
        there = held.get(info.version)
        if there is not None and there.state == v.COMPLETE:
            result.present.append(info.version)
            continue
        try:
            signed.require(src.join(str(info.version)), trust)
            published = publish(
                src.join(str(info.version)),
                dst,
                version=info.version,
                concurrency=concurrency,
                progress=progress_for(info.version) if progress_for else None,
            )
            if published.created:
                result.mirrored.append(published)
            else:  # another run published the same content under that number meanwhile
                result.present.append(info.version)
        except SavedModelError as exc:
            if _held_complete(dst, info.version):  # another mirror run published it meanwhile
                result.present.append(info.version)
                continue
            failures.append(str(exc))
    if failures:
        raise StorageError(f"{len(failures)} version(s) not mirrored: " + "; ".join(failures), dst.url)
    return result


def _held_complete(dst: Location, number: int) -> bool:
    return any(i.version == number and i.state == v.COMPLETE for i in v.versions_of(dst.fs, dst.path))

"""Records of uploaded files: what an owner uploaded, and when each upload was last used."""

from __future__ import annotations

import json
from typing import Iterable, Optional

from jobs.job import FileRecord

from .base import RecordsBase, now, s_


class FileRecords(RecordsBase):
    def put_file(self, owner: str, digest: str, name: str, size: int, kind: str,
                 summary: Optional[dict] = None) -> FileRecord:
        rec = FileRecord(id=f"sha256:{digest}", name=name, size=size, kind=kind,
                         created_at=now(), summary=summary or {})
        mapping = {"id": rec.id, "name": rec.name, "size": str(rec.size), "kind": rec.kind,
                   "created_at": str(rec.created_at),
                   "summary": json.dumps(rec.summary, separators=(",", ":"))}
        pipe = self.r.pipeline()
        pipe.hset(self._k.file(owner, digest), mapping=mapping)
        pipe.zadd(self._k.uploads, {f"{owner}:{digest}": rec.created_at})
        pipe.execute()
        return rec

    def get_file(self, owner: str, digest: str) -> Optional[FileRecord]:
        raw = self.r.hgetall(self._k.file(owner, digest))
        if not raw:
            return None
        rec = {s_(k): s_(v) for k, v in raw.items()}
        rec["summary"] = json.loads(rec.get("summary") or "{}")
        return FileRecord.model_validate(rec)

    def touch_files(self, owner: str, digests: Iterable[str]) -> None:
        """A job uses these uploads now (retention counts from their last use)."""
        members = {f"{owner}:{d}": now() for d in digests}
        if members:
            self.r.zadd(self._k.uploads, members)

    def uploads_unused_since(self, before: float, limit: int = 200) -> list[tuple[str, str]]:
        out = []
        for m in self.r.zrangebyscore(self._k.uploads, "-inf", before, start=0, num=limit):
            owner, _, digest = s_(m).rpartition(":")
            out.append((owner, digest))
        return out

    def forget_file(self, owner: str, digest: str) -> bool:
        """Drop the owner's upload record; True when no owner has this content any more."""
        pipe = self.r.pipeline()
        pipe.delete(self._k.file(owner, digest))
        pipe.zrem(self._k.uploads, f"{owner}:{digest}")
        pipe.execute()
        for _member, _score in self.r.zscan_iter(self._k.uploads, match=f"*:{digest}"):
            return False
        return True


__all__ = ["FileRecords"]

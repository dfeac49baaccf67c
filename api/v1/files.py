"""Key release and gated plaintext reads of ingested, encrypted files (DESIGN §4)."""

from __future__ import annotations

import base64
import re
from typing import Annotated

from fastapi import APIRouter, Header, Query, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, StreamingResponse

from api import errors
from api.deps import WS, Caller, now
from api.schemas import DeniedFileOut, KeyReleaseIn, KeyReleaseOut, ReleasedFileOut
from governance.auth.service import Principal
from governance.files import reading, release
from governance.workspace import Workspace

router = APIRouter(tags=["files"], responses=errors.AUTHENTICATED)

_RANGE = re.compile(r"bytes=(\d{0,19})-(\d{0,19})")


@router.post("/keys/release", response_model=KeyReleaseOut, summary="Headers re-sealed to your key, for permitted files",
             responses=errors.responses(404))
async def release_keys(body: KeyReleaseIn, caller: Caller, ws: WS) -> Response:
    """Decides `read` for each file (or every ingested file of `subset`); for the permitted ones,
    commits a `key.release` audit event first, then returns each header re-sealed to your public
    key `public_key_id` with what decryption must find. Denied files come back with their
    decisions. Another user's or a revoked public key is 404."""
    return await run_in_threadpool(_release, body, caller, ws)


def _release(body: KeyReleaseIn, caller: Principal, ws: Workspace) -> Response:
    result = release.release_keys(ws, actor=caller.actor, now=now(), public_key_id=body.public_key_id, purpose=body.purpose,
                                  files=body.files, subset=body.subset, datasets=caller.datasets)
    out = KeyReleaseOut(
        released=[ReleasedFileOut(resource=f.resource, header=base64.b64encode(f.header).decode(), size=f.size, sha256=f.sha256,
                                  mac_digest=f.mac_digest, object=f.object) for f in result.released],
        denied=[DeniedFileOut(resource=d.resource, decision=d.decision) for d in result.denied])
    return Response(out.model_dump_json(), media_type="application/json")


_FILE_RESPONSES = {
    200: {"description": "the whole plaintext", "content": {"application/octet-stream": {}}},
    206: {"description": "the requested byte range (Content-Range)", "content": {"application/octet-stream": {}}},
    403: {"description": "the decision denies: the problem's `reasons` lists its reason codes and `decision` the whole of it",
          "content": {errors.PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}}},
    416: {"description": "the range lies outside the file (Content-Range: bytes */size)",
          "content": {errors.PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}}},
}


@router.get("/files/{dataset}/{path:path}", summary="Stream a file's plaintext (for tools that cannot decrypt)",
            response_class=StreamingResponse, responses=_FILE_RESPONSES)  # type: ignore[arg-type]
async def read_file(dataset: str, path: str, caller: Caller, ws: WS,
                    purpose: Annotated[str, Query(min_length=1, max_length=128)],
                    range_: Annotated[str | None, Header(alias="range", max_length=64,
                                                         description="one range: bytes=a-b, bytes=a- or bytes=-n")] = None
                    ) -> Response:
    """Decides `read`, commits a `file.read` audit event, then decrypts server-side with the
    dataset key, after checking the payload's length and sequence of segment MACs against the
    manifest. With `Range`, only the segments the range covers are decrypted (206)."""
    wanted = _parse_range(range_) if range_ is not None else None
    if isinstance(wanted, JSONResponse):
        return wanted
    result = await run_in_threadpool(_read, ws, caller, dataset, path, purpose, wanted)
    if not result.decision.permitted:
        codes = list(result.decision.codes)
        return errors.problem(403, "access-denied", "Access denied",
                              f"read of {result.resource[:300]} is denied: {', '.join(codes)}", reasons=codes,
                              decision=result.decision.model_dump(mode="json"))
    if not result.satisfiable:
        resp = errors.problem(416, "range-not-satisfiable", "Range not satisfiable",
                              f"the range lies outside the file's {result.size} bytes")
        resp.headers["Content-Range"] = f"bytes */{result.size}"
        return resp
    assert result.chunks is not None
    headers = {"Accept-Ranges": "bytes", "Content-Length": str(max(result.length, 0))}
    if result.partial:
        headers["Content-Range"] = f"bytes {result.start}-{result.end}/{result.size}"
    return StreamingResponse(result.chunks, status_code=206 if result.partial else 200, headers=headers,
                             media_type="application/octet-stream")


def _read(ws: Workspace, caller: Principal, dataset: str, path: str, purpose: str,
          wanted: reading.ByteRange | None) -> reading.FileRead:
    return reading.read_file(ws, actor=caller.actor, now=now(), dataset=dataset, path=path, purpose=purpose,
                             byte_range=wanted, datasets=caller.datasets)


def _parse_range(value: str) -> reading.ByteRange | JSONResponse:
    """One `bytes=` range; several ranges or another unit are refused (416), as RFC 9110 allows."""
    found = _RANGE.fullmatch(value.strip())
    if found is None or (not found.group(1) and not found.group(2)):
        return errors.problem(416, "range-not-satisfiable", "Range not satisfiable",
                              "only one range of the form bytes=a-b, bytes=a- or bytes=-n is served")
    first = int(found.group(1)) if found.group(1) else None
    last = int(found.group(2)) if found.group(2) else None
    if first is not None and last is not None and last < first:
        return errors.problem(416, "range-not-satisfiable", "Range not satisfiable", "the range ends before it starts")
    return reading.ByteRange(first=first, last=last)

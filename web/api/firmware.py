"""Firmware: streamed uploads, release / revoke, downloads, station assignments and acks, and
authenticated local-storage file downloads (``/api/v1/files/{key}``)."""
import os

from flask import Blueprint, Response, current_app, redirect, request
from werkzeug.wsgi import FileWrapper, wrap_file

from storage import AREAS, InvalidKey, ObjectNotFound, validate_key
from storage.base import CHUNK_SIZE

from ..auth import current_principal, require
from ..bodies import body_limit
from ..errors import (BadRequest, ContentTooLarge, Forbidden, Gone, NotFound,
                      UnsupportedMediaType, field_error)
from ..openapi import spec
from ..services import firmware as svc
from ..services.firmware import assignments as asg
from ..services.storage_sync import area_storage
from . import actor
from .firmware_schemas import (AssignmentList, AssignmentOut, DownloadQuery, FirmwareAckIn,
                               FirmwareOut, FirmwarePage, FirmwareQuery, FirmwareUploadForm,
                               RevokeIn)

bp = Blueprint("firmware", __name__, url_prefix="/api/v1")
# Multipart boundaries, part headers and the text fields around the image (held in memory).
FORM_SLACK = 1024 * 1024
# Body read size: large blocks amortise the WSGI input's per-call cost (memory: one block).
UPLOAD_BLOCK = CHUNK_SIZE
BINARY = {"application/octet-stream": {"type": "string", "format": "binary"}}
# Local storage streams the bytes (206 for a Range, 304 for If-None-Match); S3 redirects (302).
DOWNLOAD_RESPONSES = {200: BINARY, 206: BINARY, 302: None, 304: None}
DOWNLOAD_ERRORS = (403, 410, 416)  # a draft (operators), revoked, an unsatisfiable Range


def _body_reader(limit: int):
    """``read(n)`` over the request body that refuses more than ``limit`` bytes in total.

    The WSGI input is read directly (not through a ``LimitedStream``, which copies every
    block twice more); the server stops it at Content-Length, and a body announced (or sent)
    above the limit is refused before or while it is read.
    """
    length = request.content_length
    if length is not None and length > limit:
        raise svc.TooLarge(limit)
    env = request.environ
    if length is None and not env.get("wsgi.input_terminated"):
        raise BadRequest("a Content-Length (or a chunked body the server ends) is required")
    read, left = env["wsgi.input"].read, [limit if length is None else length]

    def bounded(n: int) -> bytes:
        if left[0] <= 0:
            if length is None and read(1):  # more than the limit arrived
                raise svc.TooLarge(limit)
            return b""
        chunk = read(min(n, left[0]))
        left[0] -= len(chunk)
        return chunk
    return bounded


def parse_upload(limit: int, spools: list):
    """Parse the multipart body; the image part is hashed while it is spooled to disk.

    The image is spooled in the store's staging directory, so a local store renames it into
    place; blocks of UPLOAD_BLOCK bytes keep per-call overhead in the server's input low.
    """

    # Imported on the first upload: streaming-form-data loads smart_open, requests and aiofiles
    # (for targets we do not use), ~12 MB that a web worker serving only completions never needs.
    from .firmware_multipart import (FormTooLarge, MultipartError, PartRefused, boundary_of,
                                     parse_form)

    def open_file(filename):
        spools.append(svc.spool(limit))
        return spools[-1]

    too_large = ContentTooLarge(f"the firmware image may be at most {limit} bytes "
                                f"(MAX_FIRMWARE_BYTES)", errors=[
        {"field": "file", "message": f"larger than {limit} bytes"}])
    try:
        boundary = boundary_of(request.headers.get("Content-Type", ""))
    except MultipartError as exc:
        raise BadRequest(f"the multipart body has no (valid) boundary: {exc}") from None
    try:
        form, file = parse_form(_body_reader(limit + FORM_SLACK), boundary, open_file,
                                field_names=FirmwareUploadForm.model_fields, file_name="file",
                                max_field_bytes=FORM_SLACK, max_parts=16,
                                block_size=UPLOAD_BLOCK)
    except (svc.TooLarge, FormTooLarge):
        raise too_large from None
    except MultipartError as exc:
        raise BadRequest(f"malformed multipart body: {exc}") from None
    except PartRefused as exc:
        raise field_error(exc.name, exc.reason) from None
    fields = FirmwareUploadForm.model_validate(form)
    if file is None:
        raise field_error("file", "a multipart part named file holding the image is required")
    filename, image = file
    return fields, image.incoming(filename)


@bp.post("/firmware")
@body_limit("MAX_FIRMWARE_BYTES", FORM_SLACK, streamed=True)
@require("admin")
@spec(form=FirmwareUploadForm, files=("file",), responses={201: FirmwareOut},
      tags=["firmware"], errors=(409,))
def upload():
    """Upload an image as multipart/form-data: file, product, version, sha256?, notes? (draft)."""
    if request.mimetype != "multipart/form-data":
        raise UnsupportedMediaType("send multipart/form-data with the image in a part named file")
    spools: list = []
    try:
        fields, incoming = parse_upload(current_app.config["MAX_FIRMWARE_BYTES"], spools)
        fw = svc.upload(fields.product, fields.version, incoming, actor(),
                        expected_sha256=fields.sha256, notes=fields.notes)
    finally:
        for spool in spools:  # the temp files vanish with them
            spool.close()
    return svc.firmware_dict(fw), 201, {"Location": f"/api/v1/firmware/{fw.id}"}


@bp.get("/firmware")
@require("operator")
@spec(query=FirmwareQuery, responses={200: FirmwarePage}, tags=["firmware"])
def index(query: FirmwareQuery):
    """List firmware by product and state (cursor pagination, newest first)."""
    rows, nxt = svc.list_firmware(query.product, query.state, query.cursor, query.limit)
    return {"items": [svc.firmware_dict(fw) for fw in rows], "next_cursor": nxt}


@bp.get("/firmware/<int:firmware_id>")
@require("operator")
@spec(responses={200: FirmwareOut}, tags=["firmware"])
def show(firmware_id: int):
    """One firmware with its station assignments."""
    fw = svc.get_firmware(firmware_id)
    return svc.firmware_dict(fw, asg.firmware_assignments(fw.id))


@bp.post("/firmware/<int:firmware_id>/release")
@require("admin")
@spec(responses={202: FirmwareOut}, tags=["firmware"], errors=(409,))
def release(firmware_id: int):
    """Release a firmware: an io worker re-checks its bytes and assigns it to the stations."""
    return svc.firmware_dict(svc.release(firmware_id, actor())), 202


@bp.post("/firmware/<int:firmware_id>/revoke")
@require("admin")
@spec(body=RevokeIn, responses={200: FirmwareOut}, tags=["firmware"], errors=(409,))
def revoke(firmware_id: int, body: RevokeIn):
    """Revoke a firmware: its assignments are revoked and flashing with it is refused."""
    fw = svc.revoke(firmware_id, body.reason, actor())
    return svc.firmware_dict(fw, asg.firmware_assignments(fw.id))


def _may_download(fw) -> None:
    """Stations get released firmware only; admins may fetch drafts and revoked images too."""
    if fw.state == "released" or current_principal().role == "admin":
        return
    if fw.state == "revoked":
        raise Gone(f"firmware {fw.id} was revoked: {fw.revoke_reason}")
    raise Forbidden(f"firmware {fw.id} is a draft; only admins may download it")


def send_stored(store, key: str, etag: str, filename: str, size: int) -> Response:
    """302 to a short-lived URL (S3), or stream the object with ETag, Range and If-None-Match."""
    url = store.get_url(key, expires=current_app.config["FIRMWARE_URL_EXPIRES"])
    if url:
        resp = redirect(url, 302)
        resp.headers["Cache-Control"] = "no-store"
        resp.headers["X-Content-SHA256"] = etag
        return resp
    try:
        fh = store.open(key)
    except ObjectNotFound:  # gone since it was looked up, or a link that leads out of the store
        raise NotFound(f"no stored object {key!r}") from None
    try:  # the bytes actually there (a damaged file must not break the HTTP framing)
        size = os.fstat(fh.fileno()).st_size
    except (AttributeError, OSError, ValueError):
        pass
    # A Range answer needs a seekable wrapper; a full one may use the server's sendfile.
    body = (FileWrapper(fh, CHUNK_SIZE) if "Range" in request.headers
            else wrap_file(request.environ, fh, CHUNK_SIZE))
    resp = Response(body, mimetype="application/octet-stream", direct_passthrough=True)
    resp.content_length = size
    resp.set_etag(etag)
    resp.headers["Content-Disposition"] = \
        f'attachment; filename="{svc.safe_filename(filename)}"'
    resp.headers["Cache-Control"] = "private, no-cache"
    resp.call_on_close(fh.close)
    return resp.make_conditional(request.environ, accept_ranges=True, complete_length=size)


@bp.get("/firmware/<int:firmware_id>/download")
@require("operator")
@spec(query=DownloadQuery, responses=DOWNLOAD_RESPONSES, tags=["firmware"],
      errors=DOWNLOAD_ERRORS)
def download(firmware_id: int, query: DownloadQuery):
    """The image: streamed with ETag = sha256 and Range (local), or 302 to a presigned URL (S3)."""
    fw = svc.get_firmware(firmware_id)
    _may_download(fw)
    key, sha, size, name = fw.storage_key, fw.sha256, fw.size, fw.filename
    if query.station:
        asg.mark_delivered(fw.id, query.station, actor())
    return send_stored(area_storage("firmware"), key, sha, name, size)


@bp.get("/files/<path:key>", merge_slashes=False)  # "//etc/x" must not redirect
@require("operator")
@spec(responses=DOWNLOAD_RESPONSES, tags=["firmware"], errors=DOWNLOAD_ERRORS)
def files(key: str):
    """A stored file by area and key (firmware/…; backups/… for admins); traversal-proof."""
    area, _, rest = key.partition("/")
    if area not in AREAS:
        raise NotFound(f"no storage area {area!r}; expected one of {', '.join(sorted(AREAS))}")
    try:
        validate_key(rest)
    except InvalidKey as exc:
        raise field_error("key", str(exc), BadRequest) from None
    if area == "backups" and current_principal().role != "admin":
        raise Forbidden("backups are downloaded by admins only")
    store = area_storage(area)
    fw = svc.by_storage_key(rest) if area == "firmware" else None
    if area == "firmware" and fw is None and current_principal().role != "admin":
        raise NotFound(f"no firmware is stored as {rest!r}")
    if fw is not None:
        _may_download(fw)
    try:
        info = store.stat(rest)
    except ObjectNotFound:  # includes a key that resolves outside the store (a planted link)
        raise NotFound(f"no file {key!r}") from None
    etag = fw.sha256 if fw is not None else f"{info.size:x}-{info.modified.timestamp() if info.modified else 0:.6f}"
    return send_stored(store, rest, etag, rest.rsplit("/", 1)[-1], info.size)


@bp.get("/stations/<code>/firmware")
@require("operator")
@spec(responses={200: AssignmentList}, tags=["firmware"])
def station_firmware(code: str):
    """The firmware a station must hold now: version, sha256, size, download URL, state."""
    return {"items": [asg.assignment_dict(a) for a in asg.station_assignments(code)]}


@bp.post("/stations/<code>/firmware/<int:assignment_id>/ack")
@require("operator")
@spec(body=FirmwareAckIn, responses={200: AssignmentOut}, tags=["firmware"], errors=(409,))
def station_ack(code: str, assignment_id: int, body: FirmwareAckIn):
    """The station proves what it holds: sha256 equal -> verified, different -> failed."""
    return asg.assignment_dict(asg.ack(code, assignment_id, body.sha256, actor()))

"""A ``multipart/form-data`` upload parsed as it arrives (python-multipart's push parser): the
file part's bytes are handed on a stored chunk at a time, never held whole; the size limit is
enforced while reading, so an oversized upload is refused as soon as it crosses it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from python_multipart.multipart import MultipartParser, parse_options_header

from producers.gateway.errors import UnsupportedMediaType
from schemas import ErrorCode, InvalidRequest

FILE_FIELD = "file"
MAX_FIELD_BYTES = 4096
# Room for the multipart framing and the small fields beside the file itself.
FRAMING_ALLOWANCE_BYTES = 64 * 1024


def multipart_boundary(content_type: str | None) -> bytes:
    """The boundary of a ``multipart/form-data`` body, or 415."""
    media_type, options = parse_options_header(content_type or "")
    boundary = options.get(b"boundary")
    if media_type != b"multipart/form-data" or not boundary:
        raise UnsupportedMediaType(
            "upload a file as multipart/form-data with fields 'file' and 'purpose' "
            f"(got {content_type or 'no Content-Type'})"
        )
    return boundary


class FileTooLarge(InvalidRequest):
    """413, naming the ``file`` field (OpenAI's ``param``)."""

    code = ErrorCode.PAYLOAD_TOO_LARGE


def too_large(limit: int) -> FileTooLarge:
    return FileTooLarge(
        f"the file is larger than this deployment's limit of {limit} bytes (GENQ_FILES_MAX_BYTES)",
        details=[{"field": "file", "code": "file_too_large", "limit_bytes": limit}],
    )


@dataclass
class _Part:
    headers: dict[bytes, bytes] = field(default_factory=dict)
    name: str = ""
    filename: str | None = None
    value: bytearray = field(default_factory=bytearray)


class UploadReader:
    """Feed it the body's pieces; it collects the small fields (``purpose``) whole and the file
    part's bytes in ``pending``, which the caller stores and clears as it goes."""

    def __init__(self, boundary: bytes, max_file_bytes: int) -> None:
        self.max_file_bytes = max_file_bytes
        self.fields: dict[str, str] = {}
        self.filename: str | None = None  # set once the file part's headers are in
        self.file_bytes = 0
        self.file_done = False
        self.pending = bytearray()
        self._part = _Part()
        self._header_field = bytearray()
        self._header_value = bytearray()
        self._error: Exception | None = None
        self._parser = MultipartParser(
            boundary,
            {
                "on_part_begin": self._begin,
                "on_header_field": lambda d, s, e: self._header_field.extend(d[s:e]),
                "on_header_value": lambda d, s, e: self._header_value.extend(d[s:e]),
                "on_header_end": self._header_end,
                "on_headers_finished": self._headers_finished,
                "on_part_data": self._data,
                "on_part_end": self._end,
            },
        )

    def feed(self, chunk: bytes) -> None:
        self._parser.write(chunk)
        self._raise()

    def finish(self) -> None:
        self._parser.finalize()
        self._raise()
        if self.filename is None or not self.file_done:
            raise InvalidRequest(
                "the upload has no 'file' part; send the file as the form field 'file'",
                details=[{"field": "file", "code": "missing_required_parameter"}],
            )

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def _begin(self) -> None:
        self._part = _Part()

    def _header_end(self) -> None:
        self._part.headers[bytes(self._header_field).lower()] = bytes(self._header_value)
        self._header_field.clear()
        self._header_value.clear()

    def _headers_finished(self) -> None:
        _disposition, options = parse_options_header(
            self._part.headers.get(b"content-disposition", b"")
        )
        self._part.name = options.get(b"name", b"").decode("utf-8", "replace")
        filename = options.get(b"filename")
        if self._part.name == FILE_FIELD:
            if self.filename is not None:
                self._error = InvalidRequest(
                    "upload one file per request",
                    details=[{"field": "file", "code": "invalid_value"}],
                )
            self.filename = (filename or b"upload.jsonl").decode("utf-8", "replace")
            self._part.filename = self.filename

    def _data(self, data: bytes, start: int, end: int) -> None:
        if self._part.filename is not None:
            self.file_bytes += end - start
            if self.file_bytes > self.max_file_bytes:
                self._error = self._error or too_large(self.max_file_bytes)
                return
            self.pending += data[start:end]
            return
        self._part.value += data[start:end]
        if len(self._part.value) > MAX_FIELD_BYTES:
            self._error = self._error or InvalidRequest(
                f"the form field {self._part.name!r} is too long",
                details=[{"field": self._part.name, "code": "invalid_value"}],
            )

    def _end(self) -> None:
        if self._part.filename is not None:
            self.file_done = True
        elif self._part.name:
            self.fields[self._part.name] = self._part.value.decode("utf-8", "replace")

"""Staff profiles: the people customers meet (a field technician), shown in pre-visit
notices with their photo and a short bio.

A photo is opened with Pillow before it is kept, so what is stored is an image (not any
file with an image's name), scaled to at most ``PHOTO_PX`` on its longer side and saved
again as JPEG or PNG, which also drops whatever metadata it carried (an EXIF location).
"""

from __future__ import annotations

import io
from datetime import UTC, datetime
from typing import Any, cast

from PIL import Image, ImageOps, UnidentifiedImageError
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Connection, Table, insert, select, update

from cxloop.domain.values import iso_utc
from cxloop.lifecycle.service import NotFound, department_id, departments_t
from cxloop.store import audit
from cxloop.store.models import StaffMember

staff_t = cast(Table, StaffMember.__table__)
PHOTO_PX = 512
MAX_PHOTO_BYTES = 10 * 1024 * 1024
Image.MAX_IMAGE_PIXELS = 40_000_000  # refuse decompression bombs


class StaffIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ref: str = Field(
        min_length=1,
        max_length=200,
        pattern=r"^[^\x00-\x1f]+$",
        description="the id events carry (a technician_id property)",
    )
    name: str = Field(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f]+$")
    bio: str | None = Field(default=None, max_length=1000)
    department: str | None = Field(default=None, max_length=120)


def _row(conn: Connection, ref: str) -> Any:
    row = conn.execute(select(staff_t).where(staff_t.c.ref == ref)).first()
    if row is None:
        raise NotFound("staff", f"no staff member with ref {ref!r}")
    return row


def _shown(conn: Connection, row: Any) -> dict[str, Any]:
    department = None
    if row.department_id is not None:
        department = conn.execute(
            select(departments_t.c.name).where(departments_t.c.id == row.department_id)
        ).scalar()
    return {
        "id": int(row.id),
        "ref": row.ref,
        "name": row.name,
        "bio": row.bio,
        "department": department,
        "has_photo": row.photo is not None,
        "photo": f"/api/v1/staff/{row.ref}/photo" if row.photo is not None else None,
        "updated_at": iso_utc(row.updated_at),
    }


def save_staff(conn: Connection, new: StaffIn, actor: str) -> dict[str, Any]:
    """Create a staff member, or change the one with this ``ref`` (the photo stays)."""
    now = datetime.now(UTC)
    values = {
        "ref": new.ref.strip(),
        "name": " ".join(new.name.split()),
        "bio": (new.bio or "").strip() or None,
        "department_id": department_id(conn, new.department),
        "updated_at": now,
    }
    found = conn.execute(select(staff_t.c.id).where(staff_t.c.ref == values["ref"])).scalar()
    if found is None:
        found = conn.execute(
            insert(staff_t).values(**values, created_at=now).returning(staff_t.c.id)
        ).scalar_one()
        audit.record(conn, actor, "created", "staff", found, f"staff member {values['name']}")
    else:
        conn.execute(update(staff_t).where(staff_t.c.id == found).values(**values))
        audit.record(conn, actor, "changed", "staff", found, f"staff member {values['name']}")
    return get_staff(conn, str(values["ref"]))


def get_staff(conn: Connection, ref: str) -> dict[str, Any]:
    return _shown(conn, _row(conn, ref))


def list_staff(conn: Connection) -> list[dict[str, Any]]:
    return [_shown(conn, r) for r in conn.execute(select(staff_t).order_by(staff_t.c.name))]


def delete_staff(conn: Connection, ref: str, actor: str) -> None:
    row = _row(conn, ref)
    conn.execute(staff_t.delete().where(staff_t.c.id == row.id))
    audit.record(conn, actor, "deleted", "staff", row.id, f"staff member {row.name} deleted")


def clean_photo(data: bytes) -> tuple[bytes, str]:
    """The photo as it is kept: (bytes, content type); ``ValueError`` naming ``photo``
    for what is not a JPEG, PNG, GIF or WebP image."""
    if not data:
        raise ValueError("photo: the upload is empty")
    if len(data) > MAX_PHOTO_BYTES:
        raise ValueError(f"photo: at most {MAX_PHOTO_BYTES // (1024 * 1024)} MB")
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.format not in ("JPEG", "PNG", "GIF", "WEBP"):
                raise ValueError(f"photo: give a JPEG, PNG, GIF or WebP image, not {image.format}")
            picture = ImageOps.exif_transpose(image)
            picture.thumbnail((PHOTO_PX, PHOTO_PX))
            out = io.BytesIO()
            if picture.mode in ("RGBA", "LA", "P"):
                picture.convert("RGBA").save(out, format="PNG", optimize=True)
                return out.getvalue(), "image/png"
            picture.convert("RGB").save(out, format="JPEG", quality=85)
            return out.getvalue(), "image/jpeg"
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError):
        raise ValueError("photo: not an image cxloop can read") from None


def set_photo(conn: Connection, ref: str, data: bytes, actor: str) -> dict[str, Any]:
    row = _row(conn, ref)
    photo, kind = clean_photo(data)
    conn.execute(
        update(staff_t)
        .where(staff_t.c.id == row.id)
        .values(photo=photo, photo_type=kind, updated_at=datetime.now(UTC))
    )
    audit.record(conn, actor, "changed", "staff", row.id, f"photo of {row.name}")
    return get_staff(conn, ref)


def photo(conn: Connection, ref: str) -> tuple[bytes, str]:
    row = _row(conn, ref)
    if row.photo is None:
        raise NotFound("photo", f"{row.name} has no photo")
    return bytes(row.photo), str(row.photo_type)

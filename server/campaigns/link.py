"""How the ServerApp finds the coordinator: a small private JSON file the run config names.

Flower starts the ServerApp in a process of its own (under the SuperLink's SuperExec, on the
coordinator's host) and gives it nothing but the run config, which travels through Flower's
database and shows in its logs. So the run config carries the path of this file, never a
secret; the file (0600, in `DATA/campaigns/`) holds the database URL (which may hold a
password), the blob store's root and the scratch and lease directories.

    link = CoordinatorLink(database_url, blob_root, work_dir, lease_dir)
    path = link.write(data_dir)                 # the coordinator, once at start
    link = CoordinatorLink.read(path)           # the ServerApp
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import asdict, dataclass
from pathlib import Path

from fedota.server.files import ensure_private_dir, write_atomic

CAMPAIGNS_DIR = "campaigns"
LINK_FILE = "coordinator.json"
LEASES_DIR = "leases"

# Run config keys of fedota's Flower App.
CAMPAIGN_KEY = "campaign-id"
LINK_KEY = "coordinator-file"
RESUME_KEY = "resume"


class LinkError(Exception):
    """The coordinator file is missing, unreadable, open to others, or malformed."""


@dataclass(frozen=True)
class CoordinatorLink:
    """Where the coordinator's state lives, as the ServerApp needs it.

    Attributes:
        database_url: SQLAlchemy URL of the coordinator's database.
        blob_root: the local blob store's root.
        work_dir: scratch space on the blob store's file system.
        lease_dir: where a running ServerApp shows it is alive (see `lease`).
        lease_interval: seconds between two signs of life.
    """

    database_url: str
    blob_root: str
    work_dir: str
    lease_dir: str
    lease_interval: float = 5.0

    def write(self, data_dir: Path) -> Path:
        """Write the file to `DATA/campaigns/coordinator.json` (0600, atomically); its path.

        Raises:
            OSError: the directory or file cannot be written.
        """
        directory = Path(data_dir) / CAMPAIGNS_DIR
        ensure_private_dir(directory)
        path = directory / LINK_FILE
        write_atomic(path, json.dumps(asdict(self), sort_keys=True).encode())
        return path.resolve()

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> CoordinatorLink:
        """Raises: LinkError: with the path and what is wrong."""
        path = Path(path)
        if not path.is_absolute():
            raise LinkError(f"the coordinator file must be an absolute path, got {path}")
        try:
            mode = path.stat().st_mode
            if mode & (stat.S_IRWXG | stat.S_IRWXO):
                raise LinkError(f"{path} is open to other users (mode {stat.filemode(mode)})")
            data = json.loads(path.read_bytes())
        except OSError as exc:
            raise LinkError(f"cannot read the coordinator file {path}: {exc.strerror}") from None
        except ValueError:
            raise LinkError(f"{path} is not JSON") from None
        try:
            link = cls(**data)
        except TypeError as exc:
            raise LinkError(f"{path}: {exc}") from None
        if not all(isinstance(v, str) and v for v in (link.database_url, link.blob_root)):
            raise LinkError(f"{path}: database_url and blob_root must be non-empty strings")
        return link


def lease_dir(data_dir: Path) -> Path:
    """The lease directory under a coordinator data directory."""
    return Path(data_dir) / CAMPAIGNS_DIR / LEASES_DIR


__all__ = [
    "CAMPAIGNS_DIR",
    "CAMPAIGN_KEY",
    "LINK_KEY",
    "RESUME_KEY",
    "CoordinatorLink",
    "LinkError",
    "lease_dir",
]

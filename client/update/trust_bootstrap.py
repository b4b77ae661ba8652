"""A trust root for a device that enrolled without one (before the coordinator served updates).

Such a device fetches the repository's first root, `metadata/1.root.json`, over the mTLS device
channel and keeps it as its anchor; python-tuf then walks every later root from it, each signed by
the threshold of the one before. The bytes come from the coordinator the fleet CA authenticates,
the same party and the same trust an enrollment reply carries the root with; a device whose
coordinator is compromised at enrollment is compromised either way. Only a root signed by its
own threshold is kept.
"""

from __future__ import annotations

import logging
from pathlib import Path

from tuf.api.exceptions import DownloadError

from fedota.client.update.fetcher import DEFAULT_REPOSITORY_URL, RepositoryFetcher
from fedota.client.update.trust import TrustConfig, has_trust_root, install_trust_root
from fedota.client.update.trust_errors import translate

log = logging.getLogger(__name__)

FIRST_ROOT_PATH = "metadata/1.root.json"


def ensure_trust_root(
    update_dir: Path,
    fetcher: RepositoryFetcher,
    *,
    config: TrustConfig | None = None,
    repository_url: str = DEFAULT_REPOSITORY_URL,
) -> bool:
    """Make sure `update_dir` holds a trust anchor; True when this call had to fetch one.

    Raises:
        RepositoryUnavailable: the first root could not be fetched (retry later).
        TrustRootInvalid: what the repository serves as its first root is not a self-signed
            TUF root (nothing kept).
        OversizedData: it is larger than the device's root cap.
        TrustStateError: the update directory cannot be written.
    """
    if has_trust_root(update_dir):
        return False
    limit = (config or TrustConfig()).root_max_bytes
    log.warning(
        "this device has no update trust root (it enrolled before its coordinator served "
        "updates); fetching the repository's first root over the device channel"
    )
    try:
        root = fetcher.download_bytes(repository_url + FIRST_ROOT_PATH, limit)
    except DownloadError as exc:
        raise translate(exc, f"fetching {FIRST_ROOT_PATH}") from None
    install_trust_root(update_dir, root)
    log.info("update trust root stored in %s", update_dir)
    return True


__all__ = ["FIRST_ROOT_PATH", "ensure_trust_root"]

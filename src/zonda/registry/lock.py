"""A promotion lock kept in the MLflow Model Registry itself, so it works on any backend.

The lock of registered model ``NAME`` is a registered model named
``NAME.promotion-lock``. Registered model names are unique in every MLflow
store (a primary key in SQL stores, enforced by the tracking server for
remote clients), so *creating* it is an atomic test-and-set: exactly one of
several concurrent creators succeeds, the others get
``RESOURCE_ALREADY_EXISTS`` and wait. The creator's owner token, host, pid
and time are tags written in the same create call.

Release deletes the lock model, after checking that its owner tag is still
ours. A lock older than ``stale_after`` seconds (its holder crashed) is
broken by *renaming* it to ``NAME.promotion-lock.stale-<owner token>``: the
rename is atomic too and the target name is unique per holder, so when
several waiters find the same stale lock only one of them breaks it (the
others' rename fails on the existing target name) and no fresh lock is ever
taken for a stale one. ``stale_after`` must be far longer than a promotion
holds the lock (a few registry calls, seconds).
"""

from __future__ import annotations

import logging
import os
import random
import socket
import time
import uuid
from datetime import datetime, timezone
from typing import Any

from zonda.registry.errors import PromotionLockTimeout

log = logging.getLogger(__name__)

LOCK_SUFFIX = ".promotion-lock"
TAG_OWNER = "zonda.lock.owner"
TAG_HOLDER = "zonda.lock.holder"
TAG_ACQUIRED = "zonda.lock.acquired_at"
DEFAULT_TIMEOUT_S = 300.0  # longer than DEFAULT_STALE_AFTER_S, so a crashed holder never makes waiters fail
DEFAULT_STALE_AFTER_S = 120.0
_RETRY_CODES = ("RESOURCE_ALREADY_EXISTS", "RESOURCE_DOES_NOT_EXIST")


def lock_name(model_name: str) -> str:
    """Name of the registered model that serves as the promotion lock of ``model_name``."""
    return f"{model_name}{LOCK_SUFFIX}"


def _error_code(exc: BaseException) -> str:
    return str(getattr(exc, "error_code", ""))


class PromotionLock:
    """Context manager holding the promotion lock of one registered model (see the module docstring).

    Args:
        client: an ``mlflow.MlflowClient`` (sqlite store or tracking server).
        model_name: the registered model being promoted.
        timeout: seconds to wait for the lock before :class:`PromotionLockTimeout`.
        stale_after: age in seconds after which a lock is considered abandoned and broken.
        poll: mean seconds between attempts (jittered so waiters do not move in step).
    """

    def __init__(
        self,
        client: Any,
        model_name: str,
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        stale_after: float = DEFAULT_STALE_AFTER_S,
        poll: float = 0.2,
    ) -> None:
        self.client = client
        self.model_name = model_name
        self.name = lock_name(model_name)
        self.timeout = float(timeout)
        self.stale_after = float(stale_after)
        self.poll = float(poll)
        self.token = uuid.uuid4().hex
        self.acquired = False

    # ----------------------------------------------------------------- acquire

    def acquire(self) -> "PromotionLock":
        """Blocks until this instance holds the lock; raises PromotionLockTimeout after ``timeout`` s."""
        deadline = time.monotonic() + self.timeout
        while True:
            if self._try_create():
                self.acquired = True
                return self
            holder = self._holder()
            if holder is not None and self._age_s(holder) > self.stale_after:
                self._break(holder)
                continue
            if time.monotonic() >= deadline:
                raise PromotionLockTimeout(self._timeout_message(holder))
            time.sleep(self.poll * random.uniform(0.5, 1.5))

    def _try_create(self) -> bool:
        tags = {
            TAG_OWNER: self.token,
            TAG_HOLDER: f"{socket.gethostname()}:{os.getpid()}",
            TAG_ACQUIRED: datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
        }
        try:
            self.client.create_registered_model(
                self.name, tags=tags, description=f"Held while promoting {self.model_name}; see zonda.registry.lock."
            )
        except Exception as exc:  # noqa: BLE001 - MlflowException/RestException carry error_code
            if _error_code(exc) in _RETRY_CODES:
                return False
            raise
        return True

    def _holder(self) -> Any | None:
        """The lock's registered model, or None if it vanished meanwhile."""
        try:
            return self.client.get_registered_model(self.name)
        except Exception as exc:  # noqa: BLE001
            if _error_code(exc) == "RESOURCE_DOES_NOT_EXIST":
                return None
            raise

    @staticmethod
    def _age_s(holder: Any) -> float:
        created_ms = getattr(holder, "creation_timestamp", None) or 0
        return time.time() - created_ms / 1000.0

    def _break(self, holder: Any) -> None:
        """Moves a stale lock out of the way; a no-op if another waiter already did."""
        owner = holder.tags.get(TAG_OWNER) or f"unknown-{holder.creation_timestamp}"
        target = f"{self.name}.stale-{owner}"
        try:
            self.client.rename_registered_model(self.name, target)
        except Exception as exc:  # noqa: BLE001
            if _error_code(exc) in _RETRY_CODES:
                return
            raise
        log.warning(
            "broke the stale promotion lock of %s held by %s since %s (older than %.0f s)",
            self.model_name, holder.tags.get(TAG_HOLDER, "?"), holder.tags.get(TAG_ACQUIRED, "?"), self.stale_after,
        )
        try:
            self.client.delete_registered_model(target)
        except Exception as exc:  # noqa: BLE001 - leftover is harmless
            log.warning("could not delete the broken lock %s: %s", target, exc)

    def _timeout_message(self, holder: Any | None) -> str:
        who = "unknown"
        if holder is not None:
            who = f"{holder.tags.get(TAG_HOLDER, '?')} since {holder.tags.get(TAG_ACQUIRED, '?')}"
        return (
            f"timed out after {self.timeout:.0f} s waiting for the promotion lock of model {self.model_name!r} "
            f"(registered model {self.name!r}, held by {who}); it is broken automatically after "
            f"{self.stale_after:.0f} s, or delete that registered model by hand if its holder died"
        )

    # ----------------------------------------------------------------- release

    def still_held(self) -> bool:
        """Whether the lock model still carries our owner token (it was not broken as stale)."""
        holder = self._holder()
        return holder is not None and holder.tags.get(TAG_OWNER) == self.token

    def release(self) -> None:
        """Deletes the lock if it is still ours; logs a warning if it was broken meanwhile."""
        if not self.acquired:
            return
        self.acquired = False
        if not self.still_held():
            log.warning(
                "the promotion lock of %s was broken while held (held longer than %.0f s)", self.model_name, self.stale_after
            )
            return
        try:
            self.client.delete_registered_model(self.name)
        except Exception as exc:  # noqa: BLE001
            if _error_code(exc) != "RESOURCE_DOES_NOT_EXIST":
                raise

    def __enter__(self) -> "PromotionLock":
        return self.acquire()

    def __exit__(self, *exc_info: object) -> None:
        self.release()

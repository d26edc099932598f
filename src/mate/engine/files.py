"""A folder used by one process at a time, and files written so that a kill or a full disk leaves
the previous version intact.

``FolderLock(folder, ...)`` holds ``folder/.lock`` while a run (``mate train``) or a comparison
(``mate compare``, ``mate sweep``) writes into the folder. The file names its holder: host, pid,
when it was taken, the process's start time (to tell a reused pid) and a random token. It appears
at once and complete: it is written under a temporary name and hard-linked to ``.lock``, which
fails when a lock exists, on local disks and NFS alike; where a filesystem has no hard links it is
created with O_EXCL. fcntl/flock locks are not used: the kernel drops them when their process
dies, but some network filesystems do not honour them.

A lock outlives a process killed with SIGKILL. It is stale, and is taken over, when it was taken on
this host by a pid that no longer runs (or that now belongs to a process started later). A lock
taken on another host cannot be checked from here: the error names its holder and the file to
delete once that process is known to be gone.

A process that holds a lock may take it again (``train_task`` holds a run folder, then the
Trainer it calls takes it too); a child process may use its parent's lock when the parent passes
the token in ``MATE_FOLDER_LOCK`` (a torchrun job started by a comparison).
"""
from __future__ import annotations

import errno
import json
import os
import socket
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import IO, Callable, Optional

from ..errors import FolderInUse, MateError

LOCK_NAME = ".lock"
LOCK_ENV = "MATE_FOLDER_LOCK"  # the token of a lock that the parent process holds for this one
_held: dict[str, str] = {}  # lock file (absolute) -> token, for the locks this process holds


def _process_start(pid: int) -> Optional[str]:
    """When process ``pid`` started, in clock ticks since boot (Linux); None where /proc cannot tell."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()  # after the command name, which may hold spaces
    return fields[19] if len(fields) > 19 else None  # field 22 of proc(5), counted from field 3


def _runs(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


class FolderLock:
    """Exclusive use of ``folder``: ``with FolderLock(folder, "the run folder", hint): ...``, or
    ``acquire()`` / ``release()``. ``what`` and ``hint`` make the error when another process holds
    it: "{what} {folder} is in use by another process (host H, pid P, since T); {hint}"."""

    def __init__(self, folder: str | Path, what: str, hint: str):
        self.folder, self.what, self.hint = Path(folder), what, hint
        self.path = self.folder / LOCK_NAME
        self.token: Optional[str] = None  # the token of the lock file in force, while acquired
        self.owner = False  # whether this object created the lock file (and so removes it)

    def __enter__(self) -> "FolderLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()

    def acquire(self) -> "FolderLock":
        """Take the lock (the folder must exist). Raises FolderInUse when a live process holds it,
        OSError when the folder cannot be written."""
        key = str(self.path.absolute())
        for _ in range(10):  # each round: the lock was free, ours, or stale and removed
            mine = {"host": socket.gethostname(), "pid": os.getpid(),
                    "started": datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S %z"),
                    "process_start": _process_start(os.getpid()), "token": uuid.uuid4().hex}
            text = json.dumps(mine)
            if self._create(text):
                self.token, self.owner = mine["token"], True
                _held[key] = self.token
                return self
            found = self._read()
            if found is None:  # released meanwhile
                continue
            text, holder = found
            if not text:  # created with O_EXCL an instant ago, not written yet
                time.sleep(0.1)
                continue
            if holder.get("token") and holder["token"] in (_held.get(key), os.environ.get(LOCK_ENV)):
                self.token = holder["token"]  # this process (or its parent) holds it already, and releases it
                return self
            if self._stale(holder):
                self._remove_stale(text)
                continue
            raise FolderInUse(self._message(holder))
        raise FolderInUse(f"{self.what} {self.folder}: its lock {self.path} keeps changing hands; try again")

    def release(self) -> None:
        if self.owner:
            try:
                if json.loads(self.path.read_text()).get("token") == self.token:
                    self.path.unlink()
            except (OSError, ValueError):
                pass
            _held.pop(str(self.path.absolute()), None)
        self.token, self.owner = None, False

    def holder(self) -> Optional[dict]:
        """Who holds the lock now ({"host", "pid", "started", ...}), or None when it is free or its
        holder has died; takes nothing."""
        found = self._read()
        if found is None or (found[1] and self._stale(found[1])):
            return None
        return found[1]

    # -- the lock file --------------------------------------------------------------------------
    def _create(self, text: str) -> bool:
        """Whether the lock file was created, holding ``text``; False when one exists."""
        staged = self.folder / f"{LOCK_NAME}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
        try:
            with open(staged, "x") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            return self._link(staged, text)
        finally:
            try:
                os.unlink(staged)
            except FileNotFoundError:
                pass

    def _link(self, staged: Path, text: str) -> bool:
        try:
            os.link(staged, self.path)
            return True
        except FileExistsError:
            return False
        except OSError as exc:
            if os.stat(staged).st_nlink == 2:  # NFS can report a failure for a link it made
                return True
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
                raise
            return self._create_exclusive(text)

    def _create_exclusive(self, text: str) -> bool:
        """For filesystems without hard links: O_EXCL creation (a reader may see it empty for a moment)."""
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        return True

    def _read(self) -> Optional[tuple[str, dict]]:
        """The lock file's text and holder ({} when unreadable); None when there is no lock file."""
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return None
        try:
            holder = json.loads(text)
        except ValueError:
            holder = {}
        return text, holder if isinstance(holder, dict) else {}

    def _stale(self, holder: dict) -> bool:
        pid = holder.get("pid")
        if holder.get("host") != socket.gethostname() or not isinstance(pid, int) or pid <= 0:
            return False
        if not _runs(pid):
            return True
        started = holder.get("process_start")
        return started is not None and _process_start(pid) not in (None, started)

    def _remove_stale(self, stale_text: str) -> None:
        """Remove the lock file if it still holds ``stale_text``. It is moved aside first, so that of
        two processes removing the same stale lock, the second cannot remove the lock the first has
        just taken: it finds another text in what it moved, and links it back."""
        aside = self.folder / f"{LOCK_NAME}.stale.{os.getpid()}.{uuid.uuid4().hex[:8]}"
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return
        try:
            if aside.read_text() != stale_text:
                try:
                    os.link(aside, self.path)
                except FileExistsError:
                    pass
        finally:
            aside.unlink()

    def _message(self, holder: dict) -> str:
        if not holder:
            return (f"{self.what} {self.folder} is locked by {self.path}, which cannot be read; {self.hint}. "
                    f"If no process uses the folder, delete {self.path}")
        message = (f"{self.what} {self.folder} is in use by another process (host {holder.get('host')}, "
                   f"pid {holder.get('pid')}, since {holder.get('started')}); {self.hint}")
        if holder.get("host") != socket.gethostname():
            message += f". If that process no longer runs, delete {self.path}"
        return message


def disk_error(exc: OSError) -> str:
    """Why a write failed, in words: "the disk is full", or the system's reason."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "the disk is full" if exc.errno == errno.ENOSPC else "the disk quota is used up"
    return exc.strerror or str(exc)


def replace_atomically(path: Path, write: Callable[[IO], None], mode: str = "w") -> None:
    """Write ``path`` through a temporary file beside it (``.NAME.XXXXXXXX.tmp``, flushed and
    fsynced), renamed over ``path``: a kill leaves the old file or the new one, never a part. The
    rename is made durable too. An OSError is raised with the temporary file removed."""
    staged = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(staged, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(staged, path)
    except OSError:
        try:
            os.unlink(staged)
        except OSError:
            pass
        raise
    try:
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
    except OSError:  # a file system that cannot fsync a folder: the rename stands as it is
        pass


def write_file(path: str | Path, text: str, then: str = "train again") -> None:
    """Replace ``path`` with ``text`` atomically (``replace_atomically``). A failure (a full disk)
    is one MateError saying what to do: free space, then ``then``."""
    path = Path(path)
    try:
        replace_atomically(path, lambda f: f.write(text))
    except OSError as exc:
        raise MateError(f"could not write {path}: {disk_error(exc)}. Free space (or choose run.out_dir "
                        f"elsewhere) and {then}.") from None


def append_line(path: str | Path, line: str) -> None:
    """Append one line; a failure is one MateError. A line cut short by a crash is dropped by its readers."""
    try:
        with open(path, "a") as f:
            f.write(line + "\n")
    except OSError as exc:
        raise MateError(f"could not write {path}: {disk_error(exc)}. The last checkpoint is intact; free space "
                        "(or choose run.out_dir elsewhere) and resume.") from None


def remove_temporary_files(folder: str | Path) -> None:
    """Delete the temporary files that a kill during an atomic write left (``.NAME.XXXXXXXX.tmp``, as
    written by save_checkpoint and write_file). Call it while holding the folder's lock."""
    for path in Path(folder).glob(".*.tmp"):
        try:
            path.unlink()
        except OSError:
            pass

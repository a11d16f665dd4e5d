"""Original files we did not write in this run: checked before use, downloaded atomically.

One rule for every such file (a download, a cached download, a data-dir original): its size
and checksum (sha256, or md5 where only that is published) are checked against the table in
`fred_jax.datasets` before a reader sees a byte. `open_verified` hashes the very file object it
then hands to the reader, so a file swapped after an earlier check is still caught; cached
downloads are re-hashed on every use (a file in the cache whose name carries the checksum
proves nothing).

`fetch` downloads into `<dest>.tmp.<uuid>/` and renames into place only a complete, checked
file; the temporary folder is removed on every failure, KeyboardInterrupt included, and one
left by a killed process is removed by the next fetch of that file (`stale_after`). A body
longer than the declared size is cut off at once (bounded disk and memory). Network limits
(`Policy`, module default `POLICY`): connect and read timeouts, a bounded number of attempts
with exponential backoff, and no new attempt after `give_up_after` seconds; an HTTP 4xx
answer and a host that refuses connections or does not resolve are not retried. Every failure
message states the attempts and waits. `file://` URLs are read locally through the same
checks (a local mirror); other schemes are refused. A tqdm bar shows bytes/s and, when no byte
has arrived for `stall_after` seconds, `stalled Ns`.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import os
import shutil
import stat
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, NamedTuple
from urllib.parse import unquote, urlsplit

from fred_jax.datasets import File

_BLOCK = 1 << 20


class Policy(NamedTuple):
    """Time limits of a download (seconds)."""

    connect_timeout: float = 30.0  # to open the connection
    read_timeout: float = 60.0  # longest wait for the next bytes (response or body)
    attempts: int = 4  # at most this many tries of one file
    backoff: float = 2.0  # wait before the 2nd try; doubled before each later one
    give_up_after: float = 120.0  # no new try starts later than this after the first
    stall_after: float = 2.0  # the progress bar says `stalled Ns` after this long without bytes
    stale_after: float = 600.0  # a `*.tmp.*` folder untouched this long is a killed download's


POLICY = Policy()
"""The limits `fetch` uses when given none."""


class FetchError(Exception):
    """A download failed; the message is the cause (attempts and waits included)."""


class _Fatal(Exception):
    """A failure that another try cannot fix (HTTP 4xx, unreachable host, local file)."""


class _Retry(Exception):
    """A failure that another try may fix (timeout, dropped connection, 5xx, bad bytes)."""


def describe(expected: File) -> str:
    """`<size> bytes, sha256 <hex>` (or md5): what the file must be."""
    algorithm, digest = _checksum(expected)
    return f"{expected.size} bytes, {algorithm} {digest}"


def _checksum(expected: File) -> tuple[str, str]:
    return ("sha256", expected.sha256) if expected.sha256 else ("md5", expected.md5)


def mismatch_of(f: BinaryIO, expected: File) -> str | None:
    """Why the bytes of `f` (read from its start, at most the declared size + 1) are not the
    expected file; None when they are."""
    algorithm, digest = _checksum(expected)
    h, n = hashlib.new(algorithm), 0
    f.seek(0)
    while n <= expected.size:
        block = f.read(min(_BLOCK, expected.size + 1 - n))
        if not block:
            break
        n += len(block)
        h.update(block)
    if n != expected.size:
        return (f"more than the declared {expected.size} bytes" if n > expected.size
                else f"{n} bytes, expected {expected.size}")
    if h.hexdigest() != digest:
        return f"{algorithm} {h.hexdigest()}, expected {digest}"
    return None


def open_regular(path: Path) -> BinaryIO:
    """`path` opened for binary reading if it is a regular file (checked on the open file, so
    nothing can be swapped in between); a FIFO or a device could block or never end."""
    f = open(path, "rb", opener=lambda p, flags: os.open(p, flags | getattr(os, "O_NONBLOCK", 0)))
    if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
        f.close()
        raise IsADirectoryError(f"{path} is not a regular file")
    return f


def verify(path: Path, expected: File) -> str | None:
    """Why the file at `path` is not the expected one (size, then checksum); None when it is."""
    with open_regular(path) as f:
        return mismatch_of(f, expected)


@contextlib.contextmanager
def open_verified(path: Path, expected: File, what: str) -> Iterator[BinaryIO]:
    """`path` opened for reading, checked first (through this very file object).

    Raises ValueError `<what>: checksum mismatch for <path>: <why>; ...` when it is not the
    expected file.
    """
    try:
        f = open_regular(path)
    except IsADirectoryError as e:
        raise ValueError(f"{what}: {path} is not a regular file; put the original there") from e
    with f:
        why = mismatch_of(f, expected)
        if why:
            raise ValueError(f"{what}: checksum mismatch for {path}: {why}; replace it with the "
                             f"published file ({describe(expected)})")
        f.seek(0)
        yield f


def fetch(url: str, dest: Path, expected: File, label: str, policy: Policy | None = None) -> Path:
    """`dest`, checked: the cached file when it is the expected one, else downloaded from `url`.

    A cached file that fails its check is removed (with a warning) and fetched again. Raises
    FetchError with the cause, the attempts made and the waits between them.
    """
    policy = policy or POLICY
    if dest.exists() or dest.is_symlink():
        try:
            why = verify(dest, expected)
        except OSError as e:  # a folder, FIFO, device, dangling link or unreadable file
            why = str(e)
        if why is None:
            return dest
        print(f"warning: {label}: cached {dest} is not the published file ({why}); removed, "
              f"fetching it again", file=sys.stderr)
        if dest.is_dir() and not dest.is_symlink():
            shutil.rmtree(dest)
        else:
            dest.unlink()
        dest.with_name(dest.name + ".INFO").unlink(missing_ok=True)  # tfds's note beside it
    scheme = urlsplit(url).scheme
    if scheme not in ("http", "https", "file"):
        raise FetchError(f"unsupported URL scheme {scheme or 'none'!r}: use http://, https:// "
                         f"or file:///<absolute folder>; not retried")
    dest.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(dest, policy.stale_after)
    start, waits, tries = time.monotonic(), [], 0
    while True:
        tries += 1
        try:
            _attempt(url, dest, expected, label, policy)
            return dest
        except _Fatal as e:
            cause = f"{e}; not retried"
            break
        except _Retry as e:
            cause = str(e)
            if scheme == "file":
                cause += "; not retried (a local file)"
                break
        elapsed = time.monotonic() - start
        wait = policy.backoff * 2 ** (tries - 1)
        if tries >= policy.attempts or elapsed + wait > policy.give_up_after:
            cause += (f"; gave up after {tries} attempts in {elapsed:.1f} s (waits: "
                      f"{', '.join(f'{w:g} s' for w in waits) or 'none'}; limits: "
                      f"{policy.attempts} attempts, none started after "
                      f"{policy.give_up_after:g} s)")
            break
        time.sleep(wait)
        waits.append(wait)
    raise FetchError(cause)


def _remove_stale(dest: Path, older_than: float) -> None:
    """Removes the `<dest>.tmp.*` folders of downloads killed mid-way (SIGKILL, power loss):
    those where nothing was written for `older_than` seconds (a live download writes at
    least every read timeout)."""
    now = time.time()
    for tmp in dest.parent.glob(glob.escape(dest.name) + ".tmp.*"):
        try:
            newest = max([tmp.stat().st_mtime] + [p.stat().st_mtime for p in tmp.iterdir()])
        except OSError:  # gone meanwhile, or not a folder
            continue
        if now - newest > older_than:
            shutil.rmtree(tmp, ignore_errors=True)


def _attempt(url: str, dest: Path, expected: File, label: str, policy: Policy) -> None:
    """One try: the body into `<dest>.tmp.<uuid>/`, checked, then renamed to `dest`."""
    algorithm, digest = _checksum(expected)
    tmp = dest.parent / f"{dest.name}.tmp.{uuid.uuid4().hex}"
    tmp.mkdir()
    try:
        part, h, n = tmp / dest.name, hashlib.new(algorithm), 0
        with _Progress(expected.size, f"{label} {dest.name}"[:40], policy) as progress, \
                open(part, "wb") as out:
            chunks = contextlib.closing(_file_chunks(url) if urlsplit(url).scheme == "file"
                                        else _http_chunks(url, policy, lambda: n))
            with chunks as body:
                for chunk in body:
                    n += len(chunk)
                    if n > expected.size:
                        raise _Retry(f"more than the declared {expected.size} bytes; cut off")
                    h.update(chunk)
                    out.write(chunk)
                    progress.update(len(chunk))
            out.flush()
            os.fsync(out.fileno())
        if n != expected.size:
            raise _Retry(f"{n} bytes, expected {expected.size}")
        if h.hexdigest() != digest:
            raise _Retry(f"checksum mismatch: {algorithm} {h.hexdigest()}, expected {digest}")
        os.replace(part, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _file_chunks(url: str) -> Iterator[bytes]:
    """The bytes of a `file://` URL (a regular file only: a FIFO or device could block)."""
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise _Fatal(f"file URL with host {parts.netloc!r}: use file:///<absolute path>")
    path = Path(unquote(parts.path))
    try:
        f = open_regular(path)
    except FileNotFoundError as e:
        raise _Fatal(f"no such file: {path}") from e
    except OSError as e:
        raise _Fatal(f"cannot read {path}: {e.strerror or e}") from e
    with f:
        try:
            yield from iter(lambda: f.read(_BLOCK), b"")
        except OSError as e:
            raise _Fatal(f"cannot read {path}: {e.strerror or e}") from e


def _http_chunks(url: str, policy: Policy, received) -> Iterator[bytes]:
    """The body of an HTTP(S) URL, with the policy's timeouts; `received()` is the number of
    bytes taken so far (for messages)."""
    import requests
    from urllib3.exceptions import NewConnectionError, ReadTimeoutError

    try:
        response = requests.get(url, stream=True, allow_redirects=True,
                                timeout=(policy.connect_timeout, policy.read_timeout))
    except requests.ConnectTimeout as e:
        raise _Retry(f"no connection within {policy.connect_timeout:g} s (connect timeout)") from e
    except requests.ReadTimeout as e:
        raise _Retry(f"no answer within {policy.read_timeout:g} s (read timeout)") from e
    except requests.ConnectionError as e:
        reason = getattr(e.args[0] if e.args else None, "reason", None)
        if isinstance(reason, NewConnectionError):  # refused, or the host is not known
            detail = str(reason).split("new connection: ")[-1]
            raise _Fatal(f"unreachable: {type(reason).__name__}: {detail}") from e
        raise _Retry(f"connection failed: {e}") from e
    except requests.RequestException as e:  # invalid URL and the like
        raise _Fatal(f"{type(e).__name__}: {e}") from e
    with response:
        if response.status_code >= 400:
            text = f"HTTP {response.status_code} {response.reason}"
            raise (_Fatal if response.status_code < 500 else _Retry)(text)
        try:
            yield from response.iter_content(1 << 16)
        except requests.ConnectionError as e:
            if any(isinstance(a, ReadTimeoutError) for a in e.args):
                raise _Retry(f"stalled: no data for {policy.read_timeout:g} s (read timeout) "
                             f"after {received()} bytes") from e
            raise _Retry(f"connection dropped after {received()} bytes: {e}") from e
        except requests.RequestException as e:  # ChunkedEncodingError: the body was cut short
            raise _Retry(f"connection dropped after {received()} bytes: {e}") from e


class _Progress:
    """A tqdm byte bar whose postfix says `stalled Ns` while no byte arrives (a watcher thread
    refreshes it, since a blocked read updates nothing)."""

    def __init__(self, total: int, desc: str, policy: Policy):
        from tqdm import tqdm

        self.bar = tqdm(total=total, desc=desc, unit="B", unit_scale=True, unit_divisor=1024,
                        leave=False, mininterval=0.5, file=sys.stderr)
        self.stall_after, self.last = policy.stall_after, time.monotonic()
        self.done = threading.Event()
        self.watcher = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> _Progress:
        self.watcher.start()
        return self

    def __exit__(self, *exc) -> None:
        self.done.set()
        self.watcher.join()
        self.bar.close()

    def update(self, n: int) -> None:
        if time.monotonic() - self.last >= self.stall_after:
            self.bar.set_postfix_str("", refresh=False)
        self.last = time.monotonic()
        self.bar.update(n)

    def _watch(self) -> None:
        while not self.done.wait(min(1.0, self.stall_after / 2)):
            idle = time.monotonic() - self.last
            if idle >= self.stall_after:
                self.bar.set_postfix_str(f"stalled {idle:.0f}s")

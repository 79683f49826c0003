"""Where an adapter or a base model comes from: a local folder, the Hugging Face Hub or S3.

- ``PATH``: a folder on this machine;
- ``hf://ORG/REPO[@REVISION][/SUBFOLDER]``: huggingface_hub's ``snapshot_download`` (its cache, resume and
  progress; ``HF_TOKEN`` or ``hf auth login`` for private and gated repositories);
- ``s3://BUCKET/PREFIX``: boto3 (credentials from the usual environment variables, profiles and instance roles;
  ``AWS_ENDPOINT_URL`` for an S3-compatible store), downloaded into ``LORASTACK_HOME/downloads`` where an
  interrupted download resumes: a file whose ETag is unchanged is not fetched again, a partial one continues
  from where it stopped.

An adapter fetches only its own files (the caller names them); a base model its config, safetensors weights and
tokenizer files (:data:`MODEL_PATTERNS`; from S3, every object directly under the prefix). What is recorded is the
URL as given and the revision it resolved to (the hub's commit, the S3 objects' ETags), never a credential.
"""

from __future__ import annotations

import hashlib
import logging
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

from lorastack.errors import LorastackError, NotFound, ServerError

logger = logging.getLogger(__name__)

MODEL_PATTERNS = ("*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "*.tiktoken")
"""What a base model needs from the hub: config, safetensors weights, tokenizer and chat template files (not the
.bin, .pth or GGUF copies many repositories carry beside them)."""
_REPO_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_CHUNK = 1 << 20

Progress = Callable[[str, int, int], None]
"""Called as bytes arrive: (file name, bytes so far, total bytes)."""


class SourceError(LorastackError):
    """An adapter or model source that is malformed or cannot be fetched."""

    code = "bad_source"
    status = 400


@dataclass(frozen=True)
class Origin:
    """Where a registered adapter came from: the URL as given and what it resolved to."""

    url: str
    revision: str | None = None


@dataclass(frozen=True)
class Fetched:
    """A source made local: ``folder`` holds the fetched files; ``origin`` is None for a local folder."""

    folder: Path
    origin: Origin | None = None
    cleanup: Path | None = None
    """A download folder to delete once the adapter is in the store (a base model's download is kept)."""


@dataclass(frozen=True)
class HubSource:
    repo_id: str
    revision: str | None
    subfolder: str

    @property
    def url(self) -> str:
        return (
            f"hf://{self.repo_id}"
            + (f"@{self.revision}" if self.revision else "")
            + (f"/{self.subfolder}" if self.subfolder else "")
        )


@dataclass(frozen=True)
class S3Source:
    bucket: str
    prefix: str

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"


def is_remote(source: str) -> bool:
    return source.startswith(("hf://", "s3://"))


def _subpath(parts: list[str], source: str) -> str:
    if any(p in ("", ".", "..") for p in parts):
        raise SourceError(f"{source!r}: the path after the repository or bucket has an empty, '.' or '..' part.")
    return "/".join(parts)


def parse(source: str) -> HubSource | S3Source:
    """An ``hf://`` or ``s3://`` URL, or SourceError saying what is wrong with it."""
    if source.startswith("hf://"):
        rest = source[len("hf://") :].rstrip("/")
        parts = rest.split("/")
        if len(parts) < 2:
            raise SourceError(f"{source!r} names no repository.", "Write hf://ORG/REPO[@REVISION][/SUBFOLDER].")
        repo, _, revision = parts[1].partition("@")
        if not (_REPO_PART.fullmatch(parts[0]) and _REPO_PART.fullmatch(repo)) or "@" in parts[0]:
            raise SourceError(f"{source!r}: {parts[0]}/{parts[1]} is not ORG/REPO[@REVISION].",
                              "Write hf://ORG/REPO[@REVISION][/SUBFOLDER].")  # fmt: skip
        if "@" in parts[1] and not _REPO_PART.fullmatch(revision):
            raise SourceError(f"{source!r}: the revision after '@' must be a branch, tag or commit.")
        return HubSource(f"{parts[0]}/{repo}", revision or None, _subpath(parts[2:], source) if parts[2:] else "")
    if source.startswith("s3://"):
        bucket, _, prefix = source[len("s3://") :].partition("/")
        if "@" in bucket or ":" in bucket:
            raise SourceError(
                "Credentials do not belong in an s3:// URL (lorastack records the URL).",
                "Use AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, AWS_PROFILE or an instance role.",
            )
        if not _BUCKET.fullmatch(bucket):
            raise SourceError(f"{source!r}: {bucket!r} is not an S3 bucket name.", "Write s3://BUCKET/PREFIX.")
        prefix = prefix.strip("/")
        return S3Source(bucket, _subpath(prefix.split("/"), source) if prefix else "")
    raise SourceError(f"{source!r} is not a folder, hf:// or s3:// source.")


def fetch(
    source: str,
    downloads: Path,
    progress: Progress | None = None,
    *,
    files: tuple[str, ...] | None,
    required: str,
    what: str,
) -> Fetched:
    """Make ``source`` local: a folder as it is, a remote source downloaded (or found in its cache).

    ``files``: the file names to fetch (an adapter's); None: a base model's (:data:`MODEL_PATTERNS` from the hub,
    every object directly under an S3 prefix). ``required`` must be among them; ``what`` names the thing in errors.
    """
    if not is_remote(source):
        return Fetched(Path(source).expanduser())
    parsed = parse(source)
    if isinstance(parsed, HubSource):
        return _from_hub(parsed, files, required, what)
    return _from_s3(parsed, downloads, progress, files, required, what)


# -- Hugging Face Hub ------------------------------------------------------------------------------------------


def _from_hub(source: HubSource, files: tuple[str, ...] | None, required: str, what: str) -> Fetched:
    from huggingface_hub import errors as hub
    from huggingface_hub import snapshot_download  # the hub client loads only for hf:// sources

    prefix = f"{source.subfolder}/" if source.subfolder else ""
    try:
        snapshot = Path(
            snapshot_download(
                source.repo_id, revision=source.revision, allow_patterns=[prefix + f for f in files or MODEL_PATTERNS]
            )
        )
    except hub.GatedRepoError:
        raise SourceError(f"{source.url} is gated.", "Accept its terms on the hub, then set HF_TOKEN.") from None
    except hub.RepositoryNotFoundError:
        raise NotFound(f"No repository {source.repo_id!r} on the hub (or it is private).",
                       "Check the name; for a private one set HF_TOKEN or run hf auth login.") from None  # fmt: skip
    except hub.RevisionNotFoundError:
        raise NotFound(
            f"{source.repo_id} has no revision {source.revision!r}.", "Name a branch, tag or commit."
        ) from None
    except hub.LocalEntryNotFoundError:
        raise ServerError(
            f"Could not reach the hub for {source.url}, and it is not in the local cache.",
            "Check the network (or HF_ENDPOINT), or unset HF_HUB_OFFLINE.",
        ) from None
    except hub.HfHubHTTPError as exc:
        raise ServerError(f"The hub refused {source.url}: {str(exc).splitlines()[0][:200]}") from None
    folder = snapshot / source.subfolder if source.subfolder else snapshot
    if not (folder / required).is_file():
        raise NotFound(f"{source.url} has no {required}.", f"Point at the folder of the {what} (/SUBFOLDER).")
    # The snapshot's folder is named for the commit it resolved to: what a later download of the same URL may differ by.
    return Fetched(folder, Origin(source.url, snapshot.name))


# -- S3 --------------------------------------------------------------------------------------------------------


def _s3_client():
    import boto3  # only s3:// sources need it

    return boto3.session.Session().client("s3")  # a session of its own: credentials as the environment has them now


def _from_s3(
    source: S3Source,
    downloads: Path,
    progress: Progress | None,
    files: tuple[str, ...] | None,
    required: str,
    what: str,
) -> Fetched:
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError  # botocore loads for s3:// only

    folder = downloads / hashlib.sha256(source.url.encode()).hexdigest()[:16]
    folder.mkdir(parents=True, exist_ok=True)
    prefix = f"{source.prefix}/" if source.prefix else ""
    try:
        # Processes fetching the same URL (the ranks of one training run) take turns: the later ones find it done.
        with FileLock(folder / ".lock"):
            client = _s3_client()
            pages = client.get_paginator("list_objects_v2").paginate(Bucket=source.bucket, Prefix=prefix, Delimiter="/")
            objects = {o["Key"][len(prefix) :]: o for page in pages for o in page.get("Contents", [])}
            if required not in objects:
                raise NotFound(
                    f"{source.url} holds no {required}.", f"Point at the prefix that holds the {what}'s files."
                )
            etags = {}
            for file_name in files or sorted(objects):
                if file_name in objects and file_name and not file_name.startswith(".") and "/" not in file_name:
                    etags[file_name] = _download(
                        client, source.bucket, prefix + file_name, folder / file_name, progress
                    )
            _drop_stale(folder, etags)
    except NoCredentialsError:
        raise SourceError(
            f"No AWS credentials to read {source.url}.",
            "Set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE (credentials never enter the registry).",
        ) from None
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code in ("NoSuchBucket", "404", "NoSuchKey"):
            raise NotFound(f"{source.url}: {code}.", "Check the bucket and prefix.") from None
        if code in ("AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            raise SourceError(
                f"S3 refused {source.url} ({code}).", "Check the credentials and the bucket's policy."
            ) from None
        raise ServerError(f"S3 failed on {source.url}: {code or exc}.") from None
    except BotoCoreError as exc:
        raise ServerError(f"Could not read {source.url}: {exc}.", "Check AWS_ENDPOINT_URL and the network.") from None
    revision = ",".join(f"{name}={etag}" for name, etag in sorted(etags.items()))
    return Fetched(folder, Origin(source.url, revision), cleanup=folder)


def _download(client, bucket: str, key: str, dest: Path, progress: Progress | None) -> str:
    """Fetch one object into ``dest``; resume a partial download of the same ETag. Returns the ETag."""
    head = client.head_object(Bucket=bucket, Key=key)
    etag, size = head["ETag"].strip('"'), head["ContentLength"]
    done = dest.with_name(dest.name + ".etag")
    if dest.is_file() and dest.stat().st_size == size and _read(done) == etag:
        logger.info("%s: already downloaded (ETag %s)", key, etag)
        return etag
    part = dest.with_name(dest.name + ".part")
    part_tag = dest.with_name(dest.name + ".part.etag")
    have = part.stat().st_size if part.is_file() and _read(part_tag) == etag else 0
    if have == 0:
        part.unlink(missing_ok=True)
        part_tag.write_text(etag)
    elif have > size:
        part.unlink()
        have = 0
    if have < size:
        extra = {"Range": f"bytes={have}-"} if have else {}
        body = client.get_object(Bucket=bucket, Key=key, IfMatch=head["ETag"], **extra)["Body"]
        with part.open("ab") as fh:
            for chunk in iter(lambda: body.read(_CHUNK), b""):
                fh.write(chunk)
                have += len(chunk)
                if progress is not None:
                    progress(dest.name, have, size)
    if part.stat().st_size != size:
        raise ServerError(
            f"s3://{bucket}/{key}: got {part.stat().st_size} of {size} bytes.", "Run it again: it resumes."
        )
    part.replace(dest)
    done.write_text(etag)
    part_tag.unlink(missing_ok=True)
    return etag


def _drop_stale(folder: Path, fetched: dict[str, str]) -> None:
    """Delete what an earlier download left that the prefix no longer holds (a shard since removed would otherwise
    be loaded with the new ones)."""
    keep = {".lock", *fetched, *(f"{name}.etag" for name in fetched)}
    for path in folder.iterdir():
        if path.is_file() and path.name not in keep:
            path.unlink(missing_ok=True)


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def discard(fetched: Fetched) -> None:
    """Delete a download that the store now holds (a hub download stays in the hub's own cache)."""
    if fetched.cleanup is not None:
        shutil.rmtree(fetched.cleanup, ignore_errors=True)

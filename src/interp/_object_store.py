"""Where the file store's bytes of record live when servers share them: an S3 bucket.

The file store (``interp._files``) keeps every file in its local directory, where the
sandboxes' files are copied from. With ``file_store = "s3://BUCKET[/PREFIX]"`` each file
is also written to the bucket before it counts as stored, with what the store knows of it
(name, type, session) as the object's metadata, and a file this engine does not hold is
fetched from the bucket on first use: any server sharing the bucket places any file in its
sandboxes. A file id names one content for ever, so a fetched copy never goes stale; it is
a cache, evicted first.

Endpoint, region and credentials come from the standard AWS variables, as S3 tools read
them: ``AWS_ENDPOINT_URL`` (MinIO, SeaweedFS; unset for AWS), ``AWS_REGION`` or
``AWS_DEFAULT_REGION`` (boto3 reads only the second), ``AWS_ACCESS_KEY_ID`` and
``AWS_SECRET_ACCESS_KEY`` (or any source boto3 knows: profiles, instance roles).

Methods block: the file store calls them from its threads.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote, unquote, urlsplit

from ._exceptions import ConfigError, FileStoreError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

_CHUNK = 1024**2
_T = TypeVar("_T")


@dataclass(frozen=True)
class Fetched:
    """What the bucket held of a file: its metadata (see ``S3Objects.put``)."""

    metadata: dict[str, str]


def parse_file_store(url: str) -> tuple[str, str]:
    """``s3://BUCKET[/PREFIX]`` as (bucket, prefix ending in ``/`` or empty)."""
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc or parts.query or parts.fragment:
        raise ValueError(f"file_store must be s3://BUCKET[/PREFIX], not {url!r}")
    prefix = parts.path.strip("/")
    return parts.netloc, prefix + "/" if prefix else ""


class S3Objects:
    """Files as objects ``PREFIX/<file id>`` in one bucket, through boto3."""

    def __init__(self, url: str, environ: Mapping[str, str] = os.environ) -> None:
        try:
            import boto3
            from botocore.config import Config as BotoConfig
        except ImportError:
            raise ConfigError(
                "file_store s3://… needs boto3: pip install 'interp[server]'"
            ) from None
        self.bucket, self._prefix = parse_file_store(url)
        region = environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION")
        self._client: S3Client = boto3.client(
            "s3",
            endpoint_url=environ.get("AWS_ENDPOINT_URL_S3") or environ.get("AWS_ENDPOINT_URL"),
            region_name=region,
            config=BotoConfig(
                connect_timeout=5,
                read_timeout=60,
                retries={"mode": "standard", "max_attempts": 4},
                # Path-style addressing: what MinIO and SeaweedFS serve without DNS set-up.
                s3={"addressing_style": "path"},
            ),
        )
        self._region = region

    def _call(self, doing: str, call: Callable[[], _T]) -> _T | None:
        """``call`` with S3's errors as one-line ``FileStoreError``s saying what was being
        done; ``None`` if the object (or the bucket) does not exist."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return call()
        except ClientError as exc:
            if _code(exc) in ("404", "NoSuchKey", "NoSuchBucket"):
                return None
            raise FileStoreError(f"cannot {doing}: {_reason(exc)}") from None
        except BotoCoreError as exc:
            raise FileStoreError(f"cannot {doing}: {exc}") from None

    def open(self) -> None:
        """Check the bucket is reachable; make it if it does not exist."""
        from botocore.exceptions import ClientError

        client, bucket = self._client, self.bucket
        if self._call(f"reach bucket {bucket}", lambda: client.head_bucket(Bucket=bucket)):
            return
        where: Any = {"LocationConstraint": self._region}
        try:
            if self._region and self._region != "us-east-1":
                client.create_bucket(Bucket=bucket, CreateBucketConfiguration=where)
            else:
                client.create_bucket(Bucket=bucket)
        except ClientError as exc:
            if _code(exc) not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise FileStoreError(f"cannot create bucket {bucket}: {_reason(exc)}") from None

    def put(self, file_id: str, source: Path, metadata: Mapping[str, str], mime: str) -> None:
        """Store a file's bytes and metadata (values of any text: they are %-encoded, as
        S3 carries metadata in ASCII headers)."""
        with source.open("rb") as body:
            self._call(
                f"store {file_id} in the bucket",
                lambda: self._client.put_object(
                    Bucket=self.bucket,
                    Key=self._prefix + file_id,
                    Body=body,
                    ContentType=mime,
                    Metadata=_encoded(metadata),
                ),
            )

    def fetch(self, file_id: str, target: Path, *, max_bytes: int) -> Fetched | None:
        """Write a file's bytes at ``target`` (a new file); its metadata, or ``None`` if
        the bucket has no such file. Over ``max_bytes``, nothing is written."""
        from botocore.exceptions import BotoCoreError, ClientError

        key = self._prefix + file_id
        got = self._call(
            f"fetch {file_id}", lambda: self._client.get_object(Bucket=self.bucket, Key=key)
        )
        if got is None:
            return None
        body = got["Body"]
        try:
            if got["ContentLength"] > max_bytes:
                raise FileStoreError(f"{file_id} in the bucket is over {max_bytes} bytes")
            written = 0
            deadline = time.monotonic() + 600
            with target.open("xb") as out:
                for chunk in body.iter_chunks(_CHUNK):
                    written += len(chunk)
                    if written > max_bytes or time.monotonic() > deadline:
                        raise FileStoreError(f"cannot fetch {file_id}: too big or too slow")
                    out.write(chunk)
        except (BotoCoreError, ClientError, OSError) as exc:
            target.unlink(missing_ok=True)
            raise FileStoreError(f"cannot fetch {file_id}: {exc}") from None
        except BaseException:
            target.unlink(missing_ok=True)
            raise
        finally:
            body.close()
        return Fetched({key: unquote(value) for key, value in got["Metadata"].items()})

    def exists(self, file_id: str) -> bool:
        key = self._prefix + file_id
        found = self._call(
            f"look for {file_id}", lambda: self._client.head_object(Bucket=self.bucket, Key=key)
        )
        return found is not None

    def relabel(self, file_id: str, metadata: Mapping[str, str], mime: str) -> None:
        """Replace a stored file's metadata (S3 objects are rewritten whole: a copy onto
        itself)."""
        key = self._prefix + file_id
        self._call(
            f"update {file_id}",
            lambda: self._client.copy_object(
                Bucket=self.bucket,
                Key=key,
                CopySource={"Bucket": self.bucket, "Key": key},
                MetadataDirective="REPLACE",
                ContentType=mime,
                Metadata=_encoded(metadata),
            ),
        )

    def delete(self, file_id: str) -> None:
        key = self._prefix + file_id
        self._call(
            f"delete {file_id}", lambda: self._client.delete_object(Bucket=self.bucket, Key=key)
        )

    def close(self) -> None:
        self._client.close()


def _encoded(metadata: Mapping[str, str]) -> dict[str, str]:
    return {key: quote(value, safe="") for key, value in metadata.items()}


def _code(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def _reason(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    error = response.get("Error", {})
    if error:
        return f"{error.get('Code', '')} {error.get('Message', '')}".strip()
    return str(exc)

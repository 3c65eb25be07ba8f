"""Asset upload throughput through the API's presigned URLs against raw boto3, same SeaweedFS.

The API path is what a client does: POST the asset, PUT the bytes (one presigned PUT, or one
presigned part URL after another above the multipart threshold), POST complete. The baseline is
boto3 writing the same bytes to the same store: put_object for small files, and for the large
one a multipart upload with the same part size, one part at a time like the client. Both read
from the same temporary files; the ratio is presigned MiB/s over boto3 MiB/s.

    .venv/bin/python -m bench.kits_upload_throughput                  # 16 x 8 MiB + 1 x 256 MiB
    .venv/bin/python -m bench.kits_upload_throughput --big-mib 96     # a quick look
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import requests

from bench.kits_support import MiB, admin_token, build_app, postgres_database, seaweedfs

PART = 16 * MiB


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=16, help="number of small files")
    parser.add_argument("--small-mib", type=int, default=8)
    parser.add_argument("--big-mib", type=int, default=256, help="one multipart file")
    parser.add_argument("--repeat", type=int, default=3)
    return parser.parse_args(argv)


def make_files(folder: Path, args: argparse.Namespace) -> tuple[list[Path], Path]:
    block = os.urandom(MiB)

    def write(path: Path, mib: int) -> Path:
        with path.open("wb") as out:
            out.write(b"%PDF-1.7\n" + block[9:])
            for i in range(1, mib):
                out.write(i.to_bytes(4, "big") + block[4:])
        return path
    small = [write(folder / f"s{n}.pdf", args.small_mib) for n in range(args.small)]
    return small, write(folder / "big.pdf", args.big_mib)


def via_api(client, headers: dict[str, str], kit_id: int, path: Path) -> None:
    size = path.stat().st_size
    created = client.post(f"/api/v1/kits/{kit_id}/assets", headers=headers, json={
        "filename": path.name, "content_type": "application/pdf", "size": size}).json
    upload = created["upload"]
    with path.open("rb") as f:
        if upload["multipart"]:
            for part in upload["parts"]:
                requests.put(part["url"], data=f.read(part["size"]), timeout=300) \
                    .raise_for_status()
        else:
            requests.put(upload["url"], data=f.read(), headers=upload["headers"],
                         timeout=300).raise_for_status()
    done = client.post(f"/api/v1/kits/{kit_id}/assets/{created['asset_id']}/complete",
                       headers=headers)
    if done.status_code != 200:
        raise RuntimeError(f"complete answered {done.status_code}: {done.json}")


def via_boto3(s3, bucket: str, path: Path) -> None:
    key = f"raw/{uuid.uuid4().hex}/{path.name}"
    size = path.stat().st_size
    with path.open("rb") as f:
        if size <= 64 * MiB:
            s3.put_object(Bucket=bucket, Key=key, Body=f.read(), ContentType="application/pdf")
            return
        upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key,
                                               ContentType="application/pdf")["UploadId"]
        parts, number = [], 1
        while chunk := f.read(PART):
            etag = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id,
                                  PartNumber=number, Body=chunk)["ETag"]
            parts.append({"PartNumber": number, "ETag": etag})
            number += 1
        s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id,
                                     MultipartUpload={"Parts": parts})


def timed(fn, files: list[Path]) -> float:
    started = time.perf_counter()
    for path in files:
        fn(path)
    seconds = time.perf_counter() - started
    return sum(p.stat().st_size for p in files) / MiB / seconds


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with seaweedfs() as weed, postgres_database() as url, \
            tempfile.TemporaryDirectory() as instance, tempfile.TemporaryDirectory() as data:
        bucket = f"bench-{uuid.uuid4().hex[:8]}"
        s3 = weed.client()
        s3.create_bucket(Bucket=bucket)
        # PART is the service's default part size (KOC_MULTIPART_PART_SIZE).
        app = build_app(url, instance, **weed.env(bucket))
        client = app.test_client()
        headers = {"Authorization": f"Bearer {admin_token(app)}"}
        kit_id = client.post("/api/v1/kits", headers=headers, json={"title": "Bench"}).json["id"]
        small, big = make_files(Path(data), args)
        results: dict[str, list[float]] = {}
        for _ in range(args.repeat):
            # Alternate so neither side always gets the warmer store.
            for label, files in (("small", small), ("big", [big])):
                results.setdefault(f"api {label}", []).append(
                    timed(lambda p: via_api(client, headers, kit_id, p), files))
                results.setdefault(f"boto3 {label}", []).append(
                    timed(lambda p: via_boto3(s3, bucket, p), files))
        with app.app_context():
            from koc.extensions import db

            db.engine.dispose()
    print(f"{args.small} x {args.small_mib} MiB (single PUT) and 1 x {args.big_mib} MiB "
          f"(multipart, {PART // MiB} MiB parts); median of {args.repeat} runs, MiB/s")
    for label in ("small", "big"):
        api = statistics.median(results[f"api {label}"])
        raw = statistics.median(results[f"boto3 {label}"])
        print(f"  {label:5}  presigned via API {api:7.1f}   raw boto3 {raw:7.1f}   "
              f"ratio {api / raw:5.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

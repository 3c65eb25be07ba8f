"""Download-URL issue rate through the API, against bare presigning with boto3, as a ratio.

On PostgreSQL and SeaweedFS (both throwaway): members with tokens, one published kit targeted
by tier and segment, then GET /api/v1/kits/{id}/assets/{asset}/download through the WSGI app in
this process (no HTTP server in between, so the figure is the app's own cost: auth, visibility,
signing, recording the download, commit). The baseline signs the same URL with boto3 alone.

    .venv/bin/python -m bench.kits_download_urls                 # 200 members, 2,000 requests
    .venv/bin/python -m bench.kits_download_urls --requests 500  # a quick look
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid

from bench.kits_support import admin_token, build_app, postgres_database, seaweedfs


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=200)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    return parser.parse_args(argv)


def setup(app, members: int) -> tuple[int, int, list[str]]:
    import io

    from PIL import Image

    from koc.extensions import db
    from koc.members.models import Member, User

    client = app.test_client()
    headers = {"Authorization": f"Bearer {admin_token(app)}"}
    kit = client.post("/api/v1/kits", headers=headers, json={
        "title": "Bench kit", "min_tier": "certified",
        "segments": [{"city": "Guangzhou"}, {"tag": "toys"}]}).json
    out = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 30, 30)).save(out, "PNG")
    body = out.getvalue()
    asset = client.post(f"/api/v1/kits/{kit['id']}/assets", headers=headers, json={
        "filename": "hero.png", "content_type": "image/png", "size": len(body)}).json
    import requests

    upload = asset["upload"]
    requests.put(upload["url"], data=body, headers=upload["headers"], timeout=30)
    assert client.post(f"/api/v1/kits/{kit['id']}/assets/{asset['asset_id']}/complete",
                       headers=headers).status_code == 200
    assert client.post(f"/api/v1/kits/{kit['id']}/publish", headers=headers).status_code == 200

    from koc.core.auth import issue_token

    tokens = []
    with app.app_context():
        for n in range(members):
            user = User(external_id=f"bench-{n}", city="Guangzhou", tags=["toys"])
            member = Member(user=user, display_name=f"KOC {n}", tier_key="certified")
            db.session.add(member)
            db.session.flush()
            tokens.append(issue_token(member_id=member.id))
        db.session.commit()
    return kit["id"], asset["asset_id"], tokens


def run_api(app, kit_id: int, asset_id: int, tokens: list[str], requests: int) -> float:
    client = app.test_client()
    path = f"/api/v1/kits/{kit_id}/assets/{asset_id}/download"
    started = time.perf_counter()
    for n in range(requests):
        token = tokens[n % len(tokens)]
        response = client.get(path, headers={"Authorization": f"Bearer {token}"})
        if response.status_code != 200:
            raise RuntimeError(f"download answered {response.status_code}: {response.json}")
    return requests / (time.perf_counter() - started)


def run_presign(weed, bucket: str, requests: int) -> float:
    client = weed.client()
    started = time.perf_counter()
    for _ in range(requests):
        client.generate_presigned_url("get_object", Params={
            "Bucket": bucket, "Key": "kits/1/x/hero.png",
            "ResponseContentDisposition": 'attachment; filename="hero.png"'}, ExpiresIn=900)
    return requests / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with seaweedfs() as weed, postgres_database() as url, \
            tempfile.TemporaryDirectory() as instance:
        bucket = f"bench-{uuid.uuid4().hex[:8]}"
        weed.client().create_bucket(Bucket=bucket)
        app = build_app(url, instance, **weed.env(bucket))
        kit_id, asset_id, tokens = setup(app, args.members)
        run_api(app, kit_id, asset_id, tokens, min(100, args.requests))  # warm-up
        api = [run_api(app, kit_id, asset_id, tokens, args.requests) for _ in range(args.repeat)]
        raw = [run_presign(weed, bucket, args.requests) for _ in range(args.repeat)]
        with app.app_context():
            from koc.extensions import db

            db.engine.dispose()
    api_rate, raw_rate = statistics.median(api), statistics.median(raw)
    print(f"download URLs through the API : {api_rate:8.0f} /s  (median of {args.repeat} runs "
          f"of {args.requests}, {args.members} members, PostgreSQL + SeaweedFS)")
    print(f"bare boto3 presign (baseline) : {raw_rate:8.0f} /s")
    print(f"ratio API / bare presign      : {api_rate / raw_rate:8.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

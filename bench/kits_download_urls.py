"""Download links through gunicorn, against a bare endpoint doing the least the job needs.

On PostgreSQL and SeaweedFS (both throwaway): members with tokens, one published kit targeted by
tier and segment. Two apps are served with the same gunicorn settings (3 workers x 2 threads)
and driven by `wrk` (16 connections, a Lua script cycling through the members' tokens):

- koc: GET /api/v1/kits/{id}/assets/{asset}/download (token lookup with the member, visibility
  from cached tier ranks and the kit's targeting, local presign, the download row, commit);
- bare: a Flask endpoint that looks the token up, presigns the same object locally with boto3
  and inserts one row into `downloads`, in one transaction: the floor.

Also prints the in-process figure the old benchmark gave (the WSGI app called directly) and the
bare boto3 presign rate. Nothing asserts on the figures.

    .venv/bin/python -m bench.kits_download_urls                  # 20 s per run
    .venv/bin/python -m bench.kits_download_urls --duration 5     # a quick look
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

from bench.http_load import gunicorn, lua_string, print_table, run_wrk
from bench.kits_support import admin_token, build_app, postgres_database, seaweedfs

LUA = r"""
local counter, tokens = 0, {}
local path = PATH

function init(args)
  for line in io.lines(TOKENS) do tokens[#tokens + 1] = line end
  counter = math.random(#tokens)
end

request = function()
  counter = counter + 1
  return wrk.format("GET", path, {["Authorization"] = "Bearer " .. tokens[(counter % #tokens) + 1]})
end
"""


def bare_app():
    """Token lookup, local presign, one INSERT: what a download link costs at the least."""
    import boto3
    import sqlalchemy as sa
    from botocore.config import Config
    from flask import Flask, jsonify, request

    from koc.core.auth import hash_token

    url = os.environ["KOC_DATABASE_URL"].replace("postgresql://", "postgresql+psycopg://", 1)
    engine = sa.create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)
    client = boto3.session.Session().client(
        "s3", endpoint_url=os.environ["KOC_S3_ENDPOINT_URL"],
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}))
    bucket = os.environ["KOC_STORAGE_URL"].removeprefix("s3://")
    key = os.environ["BENCH_ASSET_KEY"]
    lookup = sa.text("SELECT member_id FROM api_tokens WHERE token_hash = :hash "
                     "AND revoked_at IS NULL AND expires_at > now()")
    insert = sa.text("INSERT INTO downloads (member_id, asset_id, kit_id, issued_at, expires_at)"
                     " VALUES (:member, :asset, :kit, now(), now() + interval '15 minutes')")
    app = Flask("bare")

    @app.get("/api/v1/kits/<int:kit_id>/assets/<int:asset_id>/download")
    def download(kit_id: int, asset_id: int):
        secret = request.headers.get("Authorization", "").partition(" ")[2]
        with engine.begin() as conn:
            member = conn.execute(lookup, {"hash": hash_token(secret)}).scalar()
            if member is None:
                return jsonify({"code": 401}), 401
            signed = client.generate_presigned_url("get_object", Params={
                "Bucket": bucket, "Key": key,
                "ResponseContentDisposition": 'attachment; filename="hero.png"'}, ExpiresIn=900)
            conn.execute(insert, {"member": member, "asset": asset_id, "kit": kit_id})
        return jsonify({"url": signed, "expires_at": None})

    return app


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=200)
    parser.add_argument("--duration", type=float, default=20, help="seconds per measured run")
    parser.add_argument("--warmup", type=float, default=3)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--requests", type=int, default=1000,
                        help="in-process and bare-presign loops (the old figures)")
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


def asset_key(app, asset_id: int) -> str:
    from koc.assets.models import Asset
    from koc.extensions import db

    with app.app_context():
        return db.session.get(Asset, asset_id).storage_key


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with seaweedfs() as weed, postgres_database() as url, \
            tempfile.TemporaryDirectory() as instance:
        bucket = f"bench-{uuid.uuid4().hex[:8]}"
        weed.client().create_bucket(Bucket=bucket)
        app = build_app(url, instance, **weed.env(bucket))
        kit_id, asset_id, tokens = setup(app, args.members)
        in_process = run_api(app, kit_id, asset_id, tokens, args.requests)
        raw = run_presign(weed, bucket, args.requests)
        key = asset_key(app, asset_id)
        with app.app_context():
            from koc.extensions import db

            db.engine.dispose()
        work = Path(instance)
        tokens_file = work / "tokens.txt"
        tokens_file.write_text("\n".join(tokens) + "\n")
        path = f"/api/v1/kits/{kit_id}/assets/{asset_id}/download"
        script = LUA.replace("PATH", lua_string(path)).replace("TOKENS",
                                                               lua_string(str(tokens_file)))
        env = {"KOC_DATABASE_URL": url, "KOC_ENV": "test", "KOC_LOG_LEVEL": "WARNING",
               "KOC_SECRET_KEY": "bench-secret-key-0123456789",
               "KOC_PUBLIC_URL": "http://localhost", "KOC_RATELIMIT_ENABLED": "false",
               "BENCH_ASSET_KEY": key, **weed.env(bucket)}
        print("koc download links benchmark (wrk)")
        print(f"  gunicorn {args.workers} workers x {args.threads} threads; wrk "
              f"{args.connections} connections; {args.members} members; {os.cpu_count()} CPUs "
              f"shared with PostgreSQL and SeaweedFS; load average {os.getloadavg()[0]:.1f}")
        results = []
        for label, target in (("koc GET .../download",
                               f"koc:create_app(instance_path={instance!r})"),
                              ("bare: token, presign, INSERT",
                               "bench.kits_download_urls:bare_app()")):
            log = work / f"gunicorn-{len(results)}.log"
            with gunicorn(target, env, workers=args.workers, threads=args.threads,
                          log=log) as base:
                run_wrk(label, base, script, duration=args.warmup,
                        connections=args.connections, workdir=work)
                results.append(run_wrk(label, base, script, duration=args.duration,
                                       connections=args.connections, workdir=work))
    print()
    print_table(results)
    koc, bare = results
    print(f"\n  ratio koc / bare: {koc.rps / bare.rps:.2f}  (goal >= 0.5, and >= 1,000/s)")
    print(f"  in-process WSGI, no server: {in_process:,.0f}/s; bare boto3 presign alone: "
          f"{raw:,.0f}/s")
    print(f"RATIO downloads koc/bare {koc.rps / bare.rps:.3f} "
          f"koc={koc.rps:.0f}/s bare={bare.rps:.0f}/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

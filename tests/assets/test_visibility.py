"""Who sees which kit: tier x segment x window x embargo, for the kit, its assets and its
download URLs alike; and the funnel, whose set-based "eligible" must agree with those rules."""

from __future__ import annotations

from datetime import datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest

from koc.assets.models import Download
from koc.core.db import utcnow
from koc.extensions import db
from tests.assets.conftest import Kits, png_bytes


def iso(delta: timedelta) -> str:
    return (utcnow() + delta).isoformat()


DAY = timedelta(days=1)


def kits_to_make() -> dict[str, tuple[dict, bool]]:
    """Kit name -> (fields, published), the windows relative to now."""
    return {
        "open": ({}, True),
        "early_only": ({"min_tier": "early_access"}, True),
        "guangzhou": ({"segments": [{"city": "Guangzhou"}]}, True),
        "beauty_or_gz01": ({"segments": [{"tag": "beauty"}, {"store_code": "GZ01"}]}, True),
        "not_yet_open": ({"available_from": iso(DAY)}, True),
        "closed": ({"available_from": iso(-2 * DAY), "available_until": iso(-DAY)}, True),
        "embargoed": ({"product_name": "Blind box S3", "launch_at": iso(DAY)}, True),
        "launched": ({"product_name": "Blind box S2", "launch_at": iso(-DAY)}, True),
        "embargo_gz_certified": ({"launch_at": iso(DAY), "min_tier": "certified",
                                  "segments": [{"city": "Guangzhou"}]}, True),
        "senior_embargo": ({"launch_at": iso(DAY), "embargo_tier": "senior"}, True),
        "draft": ({}, False),
        "archived": ({}, True),
    }


# member name -> (tier, user attributes)
MEMBERS = {
    "newcomer_gz": (None, {"city": "Guangzhou", "tags": ["toys"]}),
    "certified_sh_beauty": ("certified", {"city": "Shanghai", "tags": ["beauty"]}),
    "early_gz": ("early_access", {"city": "Guangzhou"}),
    "senior_bj_gz01": ("senior", {"city": "Beijing", "store_code": "GZ01"}),
}

SEES = {
    "newcomer_gz": {"open", "guangzhou", "launched"},
    "certified_sh_beauty": {"open", "beauty_or_gz01", "launched"},
    "early_gz": {"open", "early_only", "guangzhou", "embargoed", "launched",
                 "embargo_gz_certified"},
    "senior_bj_gz01": {"open", "early_only", "beauty_or_gz01", "embargoed", "launched",
                       "senior_embargo"},
}


@pytest.fixture
def world(app):
    kits = Kits(app)
    ids, assets = {}, {}
    for name, (fields, published) in kits_to_make().items():
        kit_id = kits.kit(title=name, **fields)
        assets[name] = kits.upload(kit_id, png_bytes())
        if published:
            kits.publish(kit_id)
        ids[name] = kit_id
    assert kits.admin.post(f"/kits/{ids['archived']}/archive").status_code == 200
    members = {}
    for name, (tier, user) in MEMBERS.items():
        members[name] = kits.member(tier=tier, **user)
    return kits, ids, assets, members


@pytest.mark.parametrize("member_name", list(MEMBERS))
def test_member_sees_exactly_the_kits_their_tier_segments_window_and_embargo_allow(
    world, member_name
) -> None:
    _, ids, assets, members = world
    _, member = members[member_name]
    by_id = {kit_id: name for name, kit_id in ids.items()}
    listed = {by_id[k["id"]] for k in member.get("/kits").json}
    assert listed == SEES[member_name]
    for name, kit_id in ids.items():
        visible = name in SEES[member_name]
        kit = member.get(f"/kits/{kit_id}")
        download = member.get(f"/kits/{kit_id}/assets/{assets[name]}/download")
        assert kit.status_code == (200 if visible else 404), name
        assert download.status_code == (200 if visible else 404), name
        if visible:
            assert "min_tier" not in kit.json and "segments" not in kit.json
            assert [a["id"] for a in kit.json["assets"]] == [assets[name]]


def test_only_the_visible_kits_downloads_are_recorded(world, app) -> None:
    _, ids, assets, members = world
    member_id, member = members["newcomer_gz"]
    for name, kit_id in ids.items():
        member.get(f"/kits/{kit_id}/assets/{assets[name]}/download")
    with app.app_context():
        recorded = {row.kit_id for row in db.session.query(Download).filter_by(
            member_id=member_id)}
    assert recorded == {ids[name] for name in SEES["newcomer_gz"]}


def test_another_kits_asset_id_is_404(world) -> None:
    _, ids, assets, members = world
    _, member = members["senior_bj_gz01"]
    response = member.get(f"/kits/{ids['open']}/assets/{assets['draft']}/download")
    assert response.status_code == 404


def test_demoted_member_loses_the_early_access_kit_and_suspended_member_everything(
    world
) -> None:
    kits, ids, assets, members = world
    member_id, member = members["early_gz"]
    path = f"/kits/{ids['embargoed']}/assets/{assets['embargoed']}/download"
    assert member.get(path).status_code == 200
    assert kits.admin.patch(f"/members/{member_id}", json={"tier": "certified"}).status_code \
        == 200
    assert member.get(path).status_code == 404
    assert member.get(f"/kits/{ids['embargoed']}").status_code == 404
    assert kits.admin.patch(f"/members/{member_id}", json={"status": "suspended"}).status_code \
        == 200
    assert member.get(f"/kits/{ids['open']}/assets/{assets['open']}/download").status_code \
        == 401


def test_download_url_lifetime_is_configurable(make_app) -> None:
    kits = Kits(make_app(KOC_DOWNLOAD_URL_TTL="60"))
    kit_id = kits.kit()
    asset_id = kits.upload(kit_id, png_bytes())
    kits.publish(kit_id)
    _, member = kits.member()
    before = utcnow()
    issued = member.get(f"/kits/{kit_id}/assets/{asset_id}/download").json
    expires_at = datetime.fromisoformat(issued["expires_at"])
    assert before + timedelta(seconds=59) <= expires_at <= utcnow() + \
        timedelta(seconds=60)
    signed_expiry = int(parse_qs(urlsplit(issued["url"]).query)["expires"][0])
    assert abs(signed_expiry - expires_at.timestamp()) <= 1


def test_embargo_needs_a_known_tier_and_a_window_in_order(kits) -> None:
    bad_tier = kits.admin.post("/kits", json={"title": "t", "launch_at": iso(DAY),
                                              "embargo_tier": "platinum"})
    assert bad_tier.status_code == 422 and "embargo_tier" in str(bad_tier.json["errors"])
    kit_id = kits.kit()
    patched = kits.admin.patch(f"/kits/{kit_id}", json={"available_from": iso(DAY),
                                                        "available_until": iso(-DAY)})
    assert patched.status_code == 422 and "available_until" in str(patched.json["errors"])
    ok = kits.admin.patch(f"/kits/{kit_id}", json={"launch_at": iso(DAY),
                                                   "embargo_tier": "senior"})
    assert ok.status_code == 200
    assert (ok.json["embargo_tier"], ok.json["title"]) == ("senior", "Kit")


def test_archived_kit_takes_no_new_assets_and_cannot_be_republished(kits) -> None:
    kit_id = kits.kit()
    kits.upload(kit_id, png_bytes())
    kits.admin.post(f"/kits/{kit_id}/archive")
    assert kits.admin.post(f"/kits/{kit_id}/publish").status_code == 409
    assert kits.admin.post(f"/kits/{kit_id}/assets", json={
        "filename": "a.png", "content_type": "image/png", "size": 5}).status_code == 409
    assert [k["id"] for k in kits.admin.get("/kits?status=archived").json] == [kit_id]


# --- the funnel --------------------------------------------------------------------------------

def _submit(member, kit_id: int, n: int, likes: int) -> int:
    response = member.post("/submissions", json={
        "kit_id": kit_id, "platform": "xiaohongshu",
        "post_url": f"https://www.xiaohongshu.com/explore/{n:024x}",
        "posted_at": utcnow().isoformat(),
        "metrics": {"views": 10 * likes, "likes": likes, "comments": 2, "saves": 1,
                    "shares": 0}})
    assert response.status_code == 201, response.json
    return response.json["id"]


@pytest.fixture(params=["sqlite", "postgres"])
def funnel_app(request, make_app):
    if request.param == "sqlite":
        return make_app()
    return make_app(KOC_DATABASE_URL=request.getfixturevalue("postgres_url"))


def test_funnel_counts_eligible_downloaders_submitters_approvals_and_engagement(
    funnel_app
) -> None:
    from tests.conftest import Api, staff_token_for

    kits = Kits(funnel_app)
    kit_id = kits.kit(min_tier="certified",
                      segments=[{"tag": "toys"}, {"city": "Guangzhou"}])
    asset_id = kits.upload(kit_id, png_bytes())
    kits.publish(kit_id)
    other_kit = kits.kit()
    kits.upload(other_kit, png_bytes())
    kits.publish(other_kit)
    toys = [kits.member(tier="certified", city="Shanghai", tags=["toys", "beauty"])
            for _ in range(3)]
    gz = kits.member(tier="senior", city="Guangzhou")
    kits.member(tier=None, city="Guangzhou")          # no tier: not eligible
    kits.member(tier="certified", city="Beijing")      # no segment: not eligible
    suspended_id, _ = kits.member(tier="senior", city="Guangzhou")
    kits.admin.patch(f"/members/{suspended_id}", json={"status": "suspended"})

    for _, member in (*toys[:2], gz):
        member.get(f"/kits/{kit_id}/assets/{asset_id}/download")
    toys[0][1].get(f"/kits/{kit_id}/assets/{asset_id}/download")   # twice: one member
    first = _submit(toys[0][1], kit_id, 1, likes=100)
    second = _submit(gz[1], kit_id, 2, likes=40)
    _submit(toys[1][1], kit_id, 3, likes=999)                       # stays pending
    _submit(toys[2][1], other_kit, 4, likes=5)                      # another kit
    reviewer = Api(funnel_app.test_client(), staff_token_for(funnel_app, "reviewer"))
    for submission_id in (first, second):
        reviewed = reviewer.post(f"/submissions/{submission_id}/review",
                                 json={"decision": "approve", "rating": 4})
        assert reviewed.status_code == 200, reviewed.json
    # A newer snapshot replaces the first one in the sums, it is not added to it.
    assert toys[0][1].post(f"/submissions/{first}/metrics", json={
        "views": 2000, "likes": 150, "comments": 3, "saves": 4, "shares": 1}).status_code \
        in (200, 201)

    viewer = Api(funnel_app.test_client(), staff_token_for(funnel_app, "viewer"))
    funnel = viewer.get(f"/stats/funnel?kit_id={kit_id}")
    assert funnel.status_code == 200, funnel.json
    assert funnel.json == {
        "kit_id": kit_id, "eligible": 4, "downloaded": 3, "submitted": 3, "approved": 2,
        "engagement": {"views": 2000 + 400, "likes": 150 + 40, "comments": 3 + 2,
                       "saves": 4 + 1, "shares": 1 + 0},
    }
    assert viewer.get("/stats/funnel?kit_id=999999").status_code == 404
    assert viewer.get("/stats/funnel").status_code == 422


@pytest.mark.clock
def test_funnel_eligible_counts_the_embargo_tier_until_launch(funnel_app) -> None:
    from tests.conftest import Api, staff_token_for

    kits = Kits(funnel_app)
    embargoed = kits.kit(launch_at=iso(DAY))
    launched = kits.kit(launch_at=iso(-DAY))
    for tier in (None, "certified", "early_access", "senior"):
        kits.member(tier=tier)
    viewer = Api(funnel_app.test_client(), staff_token_for(funnel_app, "viewer"))
    assert viewer.get(f"/stats/funnel?kit_id={embargoed}").json["eligible"] == 2
    assert viewer.get(f"/stats/funnel?kit_id={launched}").json["eligible"] == 4

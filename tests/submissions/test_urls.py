"""Post URL normalisation: every spelling of one post has one key, and different posts differ."""

from __future__ import annotations

import pytest

from koc.submissions.services.post_urls import NotAUrl, canonical_post_url, weibo_numeric_mid

NOTE = "64b7f0c2000000001e03a1b2"
XHS = f"https://www.xiaohongshu.com/explore/{NOTE}"
VIDEO = "7301234567890123456"
DOUYIN = f"https://www.douyin.com/video/{VIDEO}"


@pytest.mark.parametrize("spelling", [
    XHS,
    f"https://xiaohongshu.com/explore/{NOTE}",
    f"https://www.xiaohongshu.com/discovery/item/{NOTE}",
    f"http://xiaohongshu.com/discovery/item/{NOTE}/",
    f"https://WWW.XiaoHongShu.com/explore/{NOTE.upper()}",
    f"https://www.xiaohongshu.com/explore/{NOTE}?xsec_token=ABx9&xsec_source=pc_share"
    "&source=webshare&share_from_user_hidden=true",
    f"https://www.xiaohongshu.com/explore/{NOTE}#comment-1",
    f"https://www.xiaohongshu.com//explore/{NOTE}//",
    f"https://m.xiaohongshu.com/discovery/item/{NOTE}?app_platform=ios",
    f"【小红书】好物分享 {XHS}?xsec_source=app_share 复制本条信息",
    f"看看{XHS}，超好用！",  # noqa: RUF001 - full-width comma, as the app writes it
])
def test_every_xiaohongshu_spelling_of_a_note_is_the_explore_url(spelling: str) -> None:
    assert canonical_post_url(spelling) == XHS


@pytest.mark.parametrize("spelling", [
    DOUYIN,
    f"https://douyin.com/video/{VIDEO}/",
    f"https://www.iesdouyin.com/share/video/{VIDEO}/?region=CN&mid=1&u_code=x",
    f"https://www.douyin.com/user/MS4wLjABAAAA?modal_id={VIDEO}",
    f"https://www.douyin.com/discover?modal_id={VIDEO}&from=web",
    f"https://www.douyin.com/search/%E7%8E%A9%E5%85%B7?modal_id={VIDEO}",
    f"https://WWW.DOUYIN.COM/video/{VIDEO}?previous_page=app_code_link#top",
])
def test_every_douyin_spelling_of_a_video_is_the_video_url(spelling: str) -> None:
    assert canonical_post_url(spelling) == DOUYIN


def test_douyin_image_posts_keep_the_note_path() -> None:
    assert canonical_post_url(f"https://www.douyin.com/note/{VIDEO}?source=x") == (
        f"https://www.douyin.com/note/{VIDEO}")
    assert canonical_post_url(f"https://www.iesdouyin.com/share/note/{VIDEO}/") == (
        f"https://www.douyin.com/note/{VIDEO}")
    assert canonical_post_url(f"https://www.douyin.com/note/{VIDEO}") != DOUYIN


def test_douyin_share_text_keeps_the_short_link_as_given() -> None:
    # The app's own share text, full-width commas included.
    share = ("7.99 复制打开抖音，看看【小王的作品】开箱 # 盲盒 https://v.douyin.com/iRNBho6u/ "  # noqa: RUF001
             "复制此链接，打开Dou音搜索，直接观看视频!")  # noqa: RUF001
    assert canonical_post_url(share) == "https://v.douyin.com/iRNBho6u"
    # Words straight after the link, with no space, are not part of it.
    assert canonical_post_url("https://v.douyin.com/iRNBho6u/复制此链接") == (
        "https://v.douyin.com/iRNBho6u")
    # The short code is case-sensitive: another code is another post.
    assert canonical_post_url("https://v.douyin.com/irnbho6u/") != (
        "https://v.douyin.com/iRNBho6u")


def test_xiaohongshu_short_links_are_kept_but_lose_tracking() -> None:
    assert canonical_post_url("http://xhslink.com/a/AbCdEf?xsec_source=app#x") == (
        "https://xhslink.com/a/AbCdEf")


def test_base62_weibo_ids_decode_to_the_numeric_id() -> None:
    assert weibo_numeric_mid("z0JH2lOMb") == "3501756485200075"
    assert weibo_numeric_mid("4912345678901234") == "4912345678901234"


@pytest.mark.parametrize("spelling", [
    "https://m.weibo.cn/detail/3501756485200075",
    "https://m.weibo.cn/status/3501756485200075?sourceType=weixin",
    "https://weibo.com/1642909335/z0JH2lOMb",
    "https://www.weibo.com/1642909335/z0JH2lOMb?refer_flag=1001030103_#comment",
    "https://weibo.com/u/1642909335/3501756485200075",
])
def test_every_weibo_spelling_of_a_post_is_the_mobile_detail_url(spelling: str) -> None:
    assert canonical_post_url(spelling) == "https://m.weibo.cn/detail/3501756485200075"


def test_different_posts_stay_different() -> None:
    other_note = NOTE[:-1] + "3"
    assert canonical_post_url(f"https://www.xiaohongshu.com/explore/{other_note}") != XHS
    assert canonical_post_url(f"https://www.douyin.com/video/{VIDEO[:-1]}7") != DOUYIN
    # Parameters that are not tracking may identify the post, so they stay, in a fixed order.
    assert canonical_post_url("https://example.com/post?b=2&a=1&utm_source=x") == (
        "https://example.com/post?a=1&b=2")
    assert canonical_post_url("https://example.com/post?id=1") != canonical_post_url(
        "https://example.com/post?id=2")


def test_wechat_channels_share_text_without_a_link_is_its_own_key() -> None:
    text = "  视频号 小王的盲盒开箱\n 第3期 "
    expected = "wechat_channels:视频号 小王的盲盒开箱 第3期"
    assert canonical_post_url(text, "wechat_channels") == expected
    with pytest.raises(NotAUrl):
        canonical_post_url(text, "xiaohongshu")


@pytest.mark.parametrize("text", ["", "no link here", "ftp://example.com/x", "https://localhost"])
def test_text_without_a_web_url_is_refused(text: str) -> None:
    with pytest.raises(NotAUrl):
        canonical_post_url(text)

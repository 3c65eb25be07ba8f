"""WeCom (企业微信): the API client (`client`) and the callback message crypto (`crypto`).

Shared code: it knows WeCom's protocol, not what the programme does with groups; that is in
koc.tiers.services.wecom_groups.
"""

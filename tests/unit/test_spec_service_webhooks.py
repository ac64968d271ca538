"""github, gitlab, slack, stripe, bitbucketserver, bitbucket: bad configuration is one error line with the field path."""

from __future__ import annotations

import pytest

from airflow_argo_events.core.exceptions import SpecError

from .test_spec_sources import load

S = {"name": "s", "key": "k"}
HOOK = {"port": "12000", "endpoint": "/hook", "method": "POST"}
GITHUB = {"repositories": [{"owner": "o", "names": ["r"]}], "webhook": HOOK}
GITLAB = {"projects": ["1"], "events": ["PushEvents"], "gitlabBaseURL": "https://gitlab.com", "accessToken": S,
          "webhook": HOOK}
SLACK = {"token": S, "signingSecret": S, "webhook": HOOK}
STRIPE = {"webhook": HOOK}
BBS = {"bitbucketserverBaseURL": "https://bitbucket.example.com/rest", "webhook": HOOK}
BB = {"repositories": [{"owner": "o", "repositorySlug": "r"}], "auth": {"oauthToken": S}, "webhook": HOOK}
URL_HOOK = {**HOOK, "url": "https://hooks.example.com"}

CASES = [
    ("github", {**GITHUB, "repositories": None}, "spec.github.ev.repositories: either repositories or organizations"),
    ("github", {**GITHUB, "organizations": ["a"]}, "spec.github.ev.organizations: only one of repositories and"),
    ("github", {**GITHUB, "repositories": [{"owner": "o"}]}, "spec.github.ev.repositories[0]: owner and names"),
    ("github", {**GITHUB, "apiToken": S, "webhook": URL_HOOK}, "spec.github.ev.events: must be defined"),
    ("github", {**GITHUB, "contentType": "xml"}, 'spec.github.ev.contentType: must be "json" or "form"'),
    ("github", {**GITHUB, "githubBaseURL": "https://ghe/api/v3"}, "spec.github.ev.githubUploadURL: githubBaseURL and"),
    ("github", {**GITHUB, "githubApp": {"privateKey": S}}, "spec.github.ev.githubApp: privateKey, appID and"),
    ("github", {**GITHUB, "webhook": None}, "spec.github.ev.webhook: is required"),
    ("github", {**GITHUB, "webhook": {**HOOK, "endpoint": "x"}}, "spec.github.ev.webhook.endpoint: must start with"),
    ("github", {**GITHUB, "webhook": {**HOOK, "port": "web"}}, "spec.github.ev.webhook.port: must be a port number"),
    ("github", {**GITHUB, "webhook": {**HOOK, "serverCertSecret": S}}, "spec.github.ev.webhook.serverKeySecret: HTTPS"),
    ("gitlab", {**GITLAB, "events": None}, "spec.gitlab.ev.events: can't be empty"),
    ("gitlab", {**GITLAB, "gitlabBaseURL": ""}, "spec.gitlab.ev.gitlabBaseURL: can't be empty"),
    ("gitlab", {**GITLAB, "accessToken": None}, "spec.gitlab.ev.accessToken: is required"),
    ("gitlab", {**GITLAB, "events": ["PushEvents", "Push"]}, "spec.gitlab.ev.events[1]: unknown event 'Push'"),
    ("slack", {**SLACK, "token": None}, "spec.slack.ev.token: is required"),
    ("slack", {**SLACK, "signingSecret": None}, "spec.slack.ev.signingSecret: is required"),
    ("slack", {**SLACK, "webhook": {**HOOK, "method": ""}}, "spec.slack.ev.webhook.method: is required"),
    ("stripe", {**STRIPE, "createWebhook": True}, "spec.stripe.ev.apiKey: is required with createWebhook"),
    ("stripe", {**STRIPE, "webhook": {**HOOK, "maxPayloadSize": 0}}, "spec.stripe.ev.webhook.maxPayloadSize: must be"),
    ("bitbucketserver", {**BBS, "bitbucketserverBaseURL": ""}, "spec.bitbucketserver.ev.bitbucketserverBaseURL: can't"),
    ("bitbucketserver", {**BBS, "accessToken": S, "projects": ["P"], "webhook": URL_HOOK},
     "spec.bitbucketserver.ev.events: must be defined"),
    ("bitbucketserver", {**BBS, "checkInterval": "often"}, "spec.bitbucketserver.ev.checkInterval:"),
    ("bitbucketserver", {**BBS, "tls": {"clientCertSecret": S}}, "spec.bitbucketserver.ev.tls: clientCertSecret and"),
    ("bitbucket", {**BB, "repositories": None}, "spec.bitbucket.ev.repositories: at least one repository"),
    ("bitbucket", {**BB, "auth": None}, "spec.bitbucket.ev.auth: is required"),
    ("bitbucket", {**BB, "auth": {"basic": {"username": S}}}, "spec.bitbucket.ev.auth.basic.password: is required"),
    ("bitbucket", {**BB, "webhook": URL_HOOK}, "spec.bitbucket.ev.events: must be defined"),
]


@pytest.mark.parametrize("kind, block, error", CASES, ids=[c[2] for c in CASES])
def test_bad_config_is_one_line_naming_the_field(kind, block, error):
    with pytest.raises(SpecError) as info:
        load({kind: {"ev": {k: v for k, v in block.items() if v is not None}}})
    assert error in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("kind, block", [("github", GITHUB), ("gitlab", GITLAB), ("slack", SLACK),
                                         ("stripe", STRIPE), ("bitbucketserver", BBS), ("bitbucket", BB)])
def test_minimal_blocks_load_and_run_here(kind, block):
    (cfg,) = load({kind: {"ev": block}}).events()
    assert cfg.supported and cfg.spec.webhook.port == "12000"


def test_deprecated_single_repository_fields_still_name_the_target():
    (cfg,) = load({"github": {"ev": {"owner": "o", "repository": "r", "webhook": HOOK}}}).events()
    assert [(r.owner, r.names) for r in cfg.spec.owned_repositories()] == [("o", ["r"])]
    (cfg,) = load({"gitlab": {"ev": {**GITLAB, "projects": None, "projectID": "7"}}}).events()
    assert cfg.spec.project_ids() == ["7"]


def test_a_missing_secret_at_start_is_one_line_naming_the_field():
    import asyncio

    from airflow_argo_events.core.sources.base import source_class

    (cfg,) = load({"github": {"ev": {**GITHUB, "webhookSecret": {"name": "nowhere", "key": "k"}}}}).events()
    source = source_class("github")(cfg)

    async def first():
        return await anext(source.events())

    with pytest.raises(SpecError) as info:
        asyncio.run(first())
    assert "spec.github.ev.webhookSecret" in str(info.value) and "\n" not in str(info.value)


def test_what_is_not_done_here_is_a_validate_warning():
    es = load({"bitbucketserver": {"ev": {**BBS, "accessToken": S, "projects": ["P"], "events": ["repo:refs_changed"],
                                          "skipBranchRefsChangedOnOpenPR": True, "webhook": URL_HOOK,
                                          "tls": {"caCertSecret": S}}},
               "bitbucket": {"cloud": {**BB, "events": ["repo:push"], "webhook": {**URL_HOOK, "port": "12001"}}}})
    assert sorted(p for p, _ in es.warnings()) == ["spec.bitbucketserver.ev.skipBranchRefsChangedOnOpenPR",
                                                   "spec.bitbucketserver.ev.tls"]

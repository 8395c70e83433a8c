"""The public tunnel's traffic policy: rendered from NGROK_* settings, refused without one, read back.

The expected documents follow ngrok's Traffic Policy documentation: the `oauth` action (`provider`), a
rule after it whose expression on `actions.ngrok.oauth.identity.email` leads to `deny`, and the
`basic-auth` action (`credentials`, `realm`).
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path
from typing import Any

import pytest
import yaml

from service.cli import main
from service.errors import (
    MSG_TUNNEL_ALLOW_WITHOUT_PROVIDER,
    MSG_TUNNEL_ANONYMOUS,
    MSG_TUNNEL_BAD_DOMAIN,
    MSG_TUNNEL_BAD_EMAIL,
    MSG_TUNNEL_BAD_OPT_IN,
    MSG_TUNNEL_BASIC_CEL,
    MSG_TUNNEL_BASIC_FORMAT,
    MSG_TUNNEL_BASIC_PASSWORD,
    MSG_TUNNEL_BOTH,
    MSG_TUNNEL_OAUTH_ANYONE,
    MSG_TUNNEL_OPT_IN_IGNORED,
    MSG_TUNNEL_PROVIDER,
    MSG_TUNNEL_UNPROTECTED,
    TunnelPolicyRefused,
)
from service.share_policy import (
    OAUTH_PROVIDERS,
    POLICY_FILE_NAME,
    RenderedPolicy,
    TunnelSettings,
    policy_yaml,
    protection_of,
    read_protection,
    render_policy,
    render_to,
    write_policy,
)

EMAIL = "actions.ngrok.oauth.identity.email"
NGROK_VARIABLES = (
    "NGROK_OAUTH_PROVIDER",
    "NGROK_OAUTH_ALLOW_EMAILS",
    "NGROK_OAUTH_ALLOW_DOMAINS",
    "NGROK_BASIC_AUTH",
    "NGROK_ALLOW_ANONYMOUS",
)


def render(**env: str) -> RenderedPolicy:
    return render_policy(TunnelSettings.from_env(env))


def refused(**env: str) -> str:
    with pytest.raises(TunnelPolicyRefused) as caught:
        render(**env)
    return str(caught.value)


def as_file(policy: RenderedPolicy) -> dict[str, Any]:
    """The document as ngrok reads it back from the YAML file."""
    document: dict[str, Any] = yaml.safe_load(policy_yaml(policy))
    return document


def test_oauth_with_allowed_emails() -> None:
    policy = render(
        NGROK_OAUTH_PROVIDER="google", NGROK_OAUTH_ALLOW_EMAILS="Ada@Example.com, bob@example.org"
    )
    assert policy.protection == "oauth"
    assert policy.warnings == ()
    assert as_file(policy) == {
        "on_http_request": [
            {"name": "sign in with google", "actions": [{"type": "oauth", "config": {"provider": "google"}}]},
            {
                "name": "only the allowed accounts",
                "expressions": [f"!({EMAIL} in ['ada@example.com', 'bob@example.org'])"],
                "actions": [{"type": "deny"}],
            },
        ]
    }


def test_oauth_with_allowed_domains_matches_the_whole_domain() -> None:
    policy = render(NGROK_OAUTH_PROVIDER="GitHub", NGROK_OAUTH_ALLOW_DOMAINS="example.com,@Example.org")
    oauth, allowed = as_file(policy)["on_http_request"]
    assert oauth["actions"] == [{"type": "oauth", "config": {"provider": "github"}}]
    # '@' first: evil-example.com must not pass as example.com.
    assert allowed["expressions"] == [
        f"!({EMAIL}.endsWith('@example.com') || {EMAIL}.endsWith('@example.org'))"
    ]
    assert allowed["actions"] == [{"type": "deny"}]


def test_oauth_with_emails_and_domains_lets_either_list_in() -> None:
    policy = render(
        NGROK_OAUTH_PROVIDER="microsoft",
        NGROK_OAUTH_ALLOW_EMAILS="guest@partner.net",
        NGROK_OAUTH_ALLOW_DOMAINS="example.com",
    )
    [expression] = as_file(policy)["on_http_request"][1]["expressions"]
    # One expression: a rule's expressions must all hold, and a visitor on either list passes.
    assert expression == f"!({EMAIL} in ['guest@partner.net'] || {EMAIL}.endsWith('@example.com'))"


def test_oauth_without_an_allow_list_signs_in_anyone_and_says_so() -> None:
    policy = render(NGROK_OAUTH_PROVIDER="gitlab")
    assert as_file(policy) == {
        "on_http_request": [
            {"name": "sign in with gitlab", "actions": [{"type": "oauth", "config": {"provider": "gitlab"}}]}
        ]
    }
    assert policy.warnings == (MSG_TUNNEL_OAUTH_ANYONE.format(provider="gitlab"),)


def test_basic_auth() -> None:
    policy = render(NGROK_BASIC_AUTH="demo:correct horse:battery")  # the first colon splits
    assert policy.protection == "basic"
    assert as_file(policy) == {
        "on_http_request": [
            {
                "name": "basic auth",
                "actions": [
                    {
                        "type": "basic-auth",
                        "config": {"realm": "fastai-serve", "credentials": ["demo:correct horse:battery"]},
                    }
                ],
            }
        ]
    }


def test_the_file_says_what_it_is_and_parses_back(tmp_path: Path) -> None:
    policy = render(NGROK_BASIC_AUTH="demo:a-long-password")
    text = policy_yaml(policy)
    assert text.startswith("# The public tunnel's ngrok traffic policy")
    assert "# Asks visitors: basic auth." in text
    assert yaml.safe_load(text) == policy.document


def test_refused_without_protection_or_opt_in() -> None:
    assert refused() == MSG_TUNNEL_UNPROTECTED
    assert refused(NGROK_ALLOW_ANONYMOUS="0") == MSG_TUNNEL_UNPROTECTED
    assert refused(NGROK_OAUTH_PROVIDER="  ", NGROK_ALLOW_ANONYMOUS="no") == MSG_TUNNEL_UNPROTECTED


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"NGROK_OAUTH_PROVIDER": "google", "NGROK_BASIC_AUTH": "a:bcdefghij"}, MSG_TUNNEL_BOTH),
        ({"NGROK_OAUTH_ALLOW_EMAILS": "me@example.com"}, MSG_TUNNEL_ALLOW_WITHOUT_PROVIDER),
        ({"NGROK_OAUTH_ALLOW_DOMAINS": "example.com"}, MSG_TUNNEL_ALLOW_WITHOUT_PROVIDER),
        (
            {"NGROK_OAUTH_PROVIDER": "amazon"},  # supported with an app of your own only: no managed app
            MSG_TUNNEL_PROVIDER.format(provider="amazon", providers=", ".join(OAUTH_PROVIDERS)),
        ),
        (
            {"NGROK_OAUTH_PROVIDER": "google", "NGROK_OAUTH_ALLOW_EMAILS": "me@example.com,nobody"},
            MSG_TUNNEL_BAD_EMAIL.format(value="nobody"),
        ),
        (
            # A quote would end the CEL string and let the rest of the value through as an expression.
            {"NGROK_OAUTH_PROVIDER": "google", "NGROK_OAUTH_ALLOW_EMAILS": "x'])||true||(['@example.com"},
            MSG_TUNNEL_BAD_EMAIL.format(value="x'])||true||(['@example.com"),
        ),
        (
            {"NGROK_OAUTH_PROVIDER": "google", "NGROK_OAUTH_ALLOW_DOMAINS": "example.com') || true || ('"},
            MSG_TUNNEL_BAD_DOMAIN.format(value="example.com') || true || ('"),
        ),
        (
            {"NGROK_OAUTH_PROVIDER": "google", "NGROK_OAUTH_ALLOW_DOMAINS": "localhost"},
            MSG_TUNNEL_BAD_DOMAIN.format(value="localhost"),
        ),
        ({"NGROK_BASIC_AUTH": "no-colon-here"}, MSG_TUNNEL_BASIC_FORMAT),
        ({"NGROK_BASIC_AUTH": ":only-a-password"}, MSG_TUNNEL_BASIC_FORMAT),
        ({"NGROK_BASIC_AUTH": "user:"}, MSG_TUNNEL_BASIC_FORMAT),
        ({"NGROK_BASIC_AUTH": "user:short"}, MSG_TUNNEL_BASIC_PASSWORD.format(length=5)),
        ({"NGROK_BASIC_AUTH": "user:" + "p" * 129}, MSG_TUNNEL_BASIC_PASSWORD.format(length=129)),
        ({"NGROK_BASIC_AUTH": "user:pass${req.host}"}, MSG_TUNNEL_BASIC_CEL),
        ({"NGROK_ALLOW_ANONYMOUS": "sure"}, MSG_TUNNEL_BAD_OPT_IN.format(value="sure")),
    ],
)
def test_refused_settings_say_what_is_wrong(env: dict[str, str], message: str) -> None:
    assert refused(**env) == message


def test_anonymous_only_when_asked_and_never_silently() -> None:
    policy = render(NGROK_ALLOW_ANONYMOUS="1")
    assert policy.protection is None
    assert policy.warnings == (MSG_TUNNEL_ANONYMOUS,)
    # Still a policy file (the agent always gets one): it asks nobody anything.
    assert protection_of(as_file(policy)) is None
    [rule] = as_file(policy)["on_http_request"]
    assert [action["type"] for action in rule["actions"]] == ["add-headers"]


def test_the_opt_in_does_not_weaken_a_protected_tunnel() -> None:
    policy = render(NGROK_BASIC_AUTH="demo:a-long-password", NGROK_ALLOW_ANONYMOUS="1")
    assert policy.protection == "basic"
    assert policy.warnings == (MSG_TUNNEL_OPT_IN_IGNORED.format(protection="basic"),)


@pytest.mark.parametrize(
    "env",
    [
        {"NGROK_OAUTH_PROVIDER": "google", "NGROK_OAUTH_ALLOW_EMAILS": "me@example.com"},
        {"NGROK_OAUTH_PROVIDER": "twitch"},
        {"NGROK_BASIC_AUTH": "demo:a-long-password"},
        {"NGROK_ALLOW_ANONYMOUS": "true"},
    ],
)
def test_what_is_written_reads_back_as_what_it_asks(tmp_path: Path, env: dict[str, str]) -> None:
    policy = render(**env)
    path = write_policy(policy, tmp_path)
    assert path == tmp_path / POLICY_FILE_NAME
    assert read_protection(path) == policy.protection
    # The agent runs as another user than the one who rendered it.
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == [POLICY_FILE_NAME]  # no temporary file left behind


@pytest.mark.parametrize(
    "document",
    [
        None,
        "on_http_request: oauth",
        {"on_http_request": "oauth"},
        {"on_http_request": [{"actions": [{"type": "oauth"}]}]},  # no provider: ngrok would refuse it
        # Conditional: some requests only.
        {
            "on_http_request": [
                {
                    "expressions": ["req.url.path == '/'"],
                    "actions": [{"type": "oauth", "config": {"provider": "google"}}],
                }
            ]
        },
        # Failures let through.
        {
            "on_http_request": [
                {
                    "actions": [
                        {"type": "basic-auth", "config": {"credentials": ["a:bcdefghi"], "enforce": False}}
                    ]
                }
            ]
        },
        {"on_http_response": [{"actions": [{"type": "oauth", "config": {"provider": "google"}}]}]},
    ],
)
def test_only_an_unconditional_sign_in_counts_as_protection(document: Any) -> None:
    assert protection_of(document) is None


def test_a_missing_or_broken_file_protects_nothing(tmp_path: Path) -> None:
    assert read_protection(tmp_path / "absent.yml") is None
    broken = tmp_path / "broken.yml"
    broken.write_text("on_http_request: [unclosed\n")
    assert read_protection(broken) is None
    binary = tmp_path / "binary.yml"
    binary.write_bytes(b"\xff\xfe\x00")
    assert read_protection(binary) is None


def test_render_to_removes_an_old_policy_before_refusing(tmp_path: Path) -> None:
    render_to(TunnelSettings.from_env({"NGROK_BASIC_AUTH": "demo:a-long-password"}), tmp_path)
    assert (tmp_path / POLICY_FILE_NAME).exists()
    with pytest.raises(TunnelPolicyRefused):
        render_to(TunnelSettings.from_env({}), tmp_path)
    # An agent started now finds nothing to start with, rather than yesterday's policy.
    assert not (tmp_path / POLICY_FILE_NAME).exists()


# --- the command line: `fastai-serve share-policy` ------------------------------------------------------


@pytest.fixture
def ngrok_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No NGROK_* setting from the machine running the tests leaks in."""
    for name in NGROK_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_cli_prints_the_policy(ngrok_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    ngrok_env.setenv("NGROK_OAUTH_PROVIDER", "google")
    ngrok_env.setenv("NGROK_OAUTH_ALLOW_DOMAINS", "example.com")
    assert main(["share-policy"]) == 0
    out = capsys.readouterr().out
    assert (
        yaml.safe_load(out)
        == render(NGROK_OAUTH_PROVIDER="google", NGROK_OAUTH_ALLOW_DOMAINS="example.com").document
    )


def test_cli_refuses_with_exit_2_and_writes_nothing(
    ngrok_env: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stale = tmp_path / POLICY_FILE_NAME
    stale.write_text("on_http_request: []\n")
    assert main(["share-policy", "--out-dir", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == f"fastai-serve: error: {MSG_TUNNEL_UNPROTECTED}"
    assert not stale.exists()


def test_cli_writes_the_policy_and_keeps_the_password_out_of_the_log(
    ngrok_env: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ngrok_env.setenv("NGROK_BASIC_AUTH", "demo:a-long-password")
    out_dir = tmp_path / "new"  # created when missing
    with caplog.at_level(logging.INFO, logger="fastai_serve.share_policy"):
        assert main(["share-policy", "--out-dir", str(out_dir)]) == 0
    assert read_protection(out_dir / POLICY_FILE_NAME) == "basic"
    assert "basic auth" in caplog.text
    assert "a-long-password" not in caplog.text


def test_cli_opt_in_logs_loudly(
    ngrok_env: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ngrok_env.setenv("NGROK_ALLOW_ANONYMOUS", "1")
    with caplog.at_level(logging.INFO, logger="fastai_serve.share_policy"):
        assert main(["share-policy", "--out-dir", str(tmp_path)]) == 0
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert warning.getMessage() == MSG_TUNNEL_ANONYMOUS
    assert warning.getMessage().startswith("WARNING: NGROK_ALLOW_ANONYMOUS=1")
    assert read_protection(tmp_path / POLICY_FILE_NAME) is None
    assert os.access(tmp_path / POLICY_FILE_NAME, os.R_OK)

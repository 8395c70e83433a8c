"""The public tunnel's ngrok traffic policy: rendered from `NGROK_*` settings, and read back.

`docker compose --profile public up` runs `fastai-serve share-policy --out-dir DIR` in a one-shot container
before the ngrok agent, which starts with `--traffic-policy-file DIR/traffic-policy.yml`. The policy makes
ngrok's edge ask every visitor to sign in before a request reaches the api:

- OAuth (`NGROK_OAUTH_PROVIDER`, one of the providers ngrok runs a managed app for), optionally narrowed to
  `NGROK_OAUTH_ALLOW_EMAILS` and/or `NGROK_OAUTH_ALLOW_DOMAINS`: a rule after the `oauth` action denies (403)
  any signed-in e-mail outside both lists;
- or HTTP basic auth (`NGROK_BASIC_AUTH=user:password`, ngrok's `basic-auth` action).

With neither, nothing is rendered and the command fails (exit 2), so the agent, whose `--traffic-policy-file`
is then missing, cannot open a tunnel: an unprotected URL needs `NGROK_ALLOW_ANONYMOUS=1`, said on purpose,
which renders a policy that asks nobody and logs a warning. Formats: ngrok's Traffic Policy documentation
(actions `oauth`, `basic-auth`, `deny`, `add-headers`; rule `expressions` in CEL, all of which must hold).

The api reads the same file back (`read_protection`) for `/api/v1/share`'s `protected`: what the tunnel
really asks, not what the environment meant to ask. Knows nothing about HTTP routes.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

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
    MSG_TUNNEL_RENDERED,
    MSG_TUNNEL_UNPROTECTED,
    TunnelPolicyRefused,
)

Protection = Literal["oauth", "basic"]

POLICY_FILE_NAME = "traffic-policy.yml"
# The providers ngrok has a managed OAuth app for: the only ones that work without a client id and secret
# of your own, which this renderer does not take (ngrok docs, OAuth action, "Supported providers").
OAUTH_PROVIDERS = ("github", "gitlab", "google", "linkedin", "microsoft", "twitch")
# ngrok's limits on a basic-auth password (Basic Auth action, "Additional restrictions").
BASIC_PASSWORD_MIN, BASIC_PASSWORD_MAX = 8, 128
BASIC_REALM = "fastai-serve"
# The signed-in user's e-mail, set by the oauth action for the rules after it.
IDENTITY_EMAIL = "actions.ngrok.oauth.identity.email"
# What an anonymous tunnel's policy does: nothing that stops a request; the header only marks the choice.
ANONYMOUS_HEADER = "x-fastai-serve-tunnel"
_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"", "0", "false", "no", "off"}
# Conservative on purpose: each value is written into a CEL string literal, so no quotes, backslashes,
# spaces or commas can get in; anything odd is refused rather than escaped.
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_DOMAIN = re.compile(rf"^{_LABEL}(?:\.{_LABEL})+$")
_LOCAL_PART = re.compile(r"^[a-z0-9.!#%&*+/=?^_~-]+$")
HEADER = (
    "# The public tunnel's ngrok traffic policy, rendered by `fastai-serve share-policy` from NGROK_*\n"
    "# settings (docker compose --profile public renders it at every start: edit those, not this file).\n"
)

log = logging.getLogger("fastai_serve.share_policy")


@dataclass(frozen=True)
class TunnelSettings:
    """What the `public` profile's environment asks of the tunnel (`NGROK_*`, read once by the CLI)."""

    oauth_provider: str | None = None
    allow_emails: tuple[str, ...] = ()
    allow_domains: tuple[str, ...] = ()
    basic_auth: str | None = None
    allow_anonymous: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> TunnelSettings:
        def value(name: str) -> str | None:
            text = env.get(name, "").strip()
            return text or None

        def items(name: str) -> tuple[str, ...]:
            return tuple(part.strip() for part in env.get(name, "").split(",") if part.strip())

        return cls(
            oauth_provider=value("NGROK_OAUTH_PROVIDER"),
            allow_emails=items("NGROK_OAUTH_ALLOW_EMAILS"),
            allow_domains=items("NGROK_OAUTH_ALLOW_DOMAINS"),
            # Not stripped: a password may end in a space; only an empty value means "unset".
            basic_auth=env.get("NGROK_BASIC_AUTH") or None,
            allow_anonymous=env.get("NGROK_ALLOW_ANONYMOUS", ""),
        )


@dataclass(frozen=True)
class RenderedPolicy:
    """A traffic policy document, what it asks visitors, and what the operator should hear about it."""

    document: dict[str, Any]
    protection: Protection | None
    warnings: tuple[str, ...] = field(default=())

    def describe(self) -> str:
        return {"oauth": "OAuth sign-in", "basic": "basic auth", None: "ANONYMOUS (nobody signs in)"}[
            self.protection
        ]


def render_policy(settings: TunnelSettings) -> RenderedPolicy:
    """The traffic policy `settings` ask for; `TunnelPolicyRefused` when they ask for none or nonsense."""
    anonymous = _opt_in(settings.allow_anonymous)
    if settings.oauth_provider and settings.basic_auth:
        raise TunnelPolicyRefused(MSG_TUNNEL_BOTH)
    if (settings.allow_emails or settings.allow_domains) and not settings.oauth_provider:
        raise TunnelPolicyRefused(MSG_TUNNEL_ALLOW_WITHOUT_PROVIDER)
    if settings.oauth_provider:
        policy = _oauth(settings)
    elif settings.basic_auth:
        policy = _basic(settings.basic_auth)
    elif anonymous:
        return RenderedPolicy(document=_anonymous(), protection=None, warnings=(MSG_TUNNEL_ANONYMOUS,))
    else:
        raise TunnelPolicyRefused(MSG_TUNNEL_UNPROTECTED)
    if anonymous:
        ignored = MSG_TUNNEL_OPT_IN_IGNORED.format(protection=policy.protection)
        policy = RenderedPolicy(policy.document, policy.protection, (*policy.warnings, ignored))
    return policy


def policy_yaml(policy: RenderedPolicy) -> str:
    """The policy as the YAML file ngrok's `--traffic-policy-file` reads."""
    body: str = yaml.safe_dump(policy.document, sort_keys=False, default_flow_style=False, width=120)
    return HEADER + f"# Asks visitors: {policy.describe()}.\n" + body


def write_policy(policy: RenderedPolicy, out_dir: Path) -> Path:
    """Write the policy into `out_dir` at once (a reader never sees half a file); readable by the agent."""
    target = out_dir / POLICY_FILE_NAME
    fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=".traffic-policy-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(policy_yaml(policy))
        # The agent runs as another user (ngrok's image: uid 1000); the volume is shared by these
        # containers only, and the same secret is in their environment anyway.
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def clear_policy(out_dir: Path) -> None:
    """Remove an earlier run's policy, so a refused start cannot leave the agent an old one to use."""
    (out_dir / POLICY_FILE_NAME).unlink(missing_ok=True)


def render_to(settings: TunnelSettings, out_dir: Path) -> RenderedPolicy:
    """The whole `share-policy --out-dir` step: clear, render (or refuse), write, say what was written."""
    clear_policy(out_dir)
    policy = render_policy(settings)
    for warning in policy.warnings:
        log.warning(warning)
    path = write_policy(policy, out_dir)
    log.info(MSG_TUNNEL_RENDERED.format(what=policy.describe(), path=path))
    return policy


def protection_of(document: Any) -> Protection | None:
    """What a traffic policy asks every visitor: an unconditional `oauth` or enforced `basic-auth` action.

    Strict on purpose (the answer feeds a warning): an action inside a rule with `expressions` applies to
    some requests only, and `enforce: false` lets failures through, so neither counts.
    """
    rules = document.get("on_http_request") if isinstance(document, dict) else None
    for rule in rules if isinstance(rules, list) else []:
        if not isinstance(rule, dict) or rule.get("expressions"):
            continue
        actions = rule.get("actions")
        for action in actions if isinstance(actions, list) else []:
            kind = action.get("type") if isinstance(action, dict) else None
            config = action.get("config") if isinstance(action, dict) else None
            config = config if isinstance(config, dict) else {}
            if kind == "oauth" and config.get("provider"):
                return "oauth"
            if (
                kind == "basic-auth"
                and config.get("credentials")
                and config.get("enforce", True) is not False
            ):
                return "basic"
    return None


def read_protection(path: Path) -> Protection | None:
    """`protection_of` the policy file at `path`; None when it is missing or unreadable (nothing proven)."""
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    return protection_of(document)


def _opt_in(value: str) -> bool:
    text = value.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    # A typo must not open the tunnel, and must not pass for "no" unnoticed either.
    raise TunnelPolicyRefused(MSG_TUNNEL_BAD_OPT_IN.format(value=value))


def _oauth(settings: TunnelSettings) -> RenderedPolicy:
    provider = (settings.oauth_provider or "").strip().lower()
    if provider not in OAUTH_PROVIDERS:
        raise TunnelPolicyRefused(
            MSG_TUNNEL_PROVIDER.format(provider=settings.oauth_provider, providers=", ".join(OAUTH_PROVIDERS))
        )
    emails = [_email(value) for value in settings.allow_emails]
    domains = [_domain(value) for value in settings.allow_domains]
    rules: list[dict[str, Any]] = [
        {"name": f"sign in with {provider}", "actions": [{"type": "oauth", "config": {"provider": provider}}]}
    ]
    warnings: tuple[str, ...] = ()
    if emails or domains:
        # One expression: the rule's expressions must all hold, and a visitor passes on either list.
        listed = ", ".join(f"'{email}'" for email in emails)
        allowed = ([f"{IDENTITY_EMAIL} in [{listed}]"] if emails else []) + [
            f"{IDENTITY_EMAIL}.endsWith('@{domain}')" for domain in domains
        ]
        rules.append(
            {
                "name": "only the allowed accounts",
                "expressions": [f"!({' || '.join(allowed)})"],
                "actions": [{"type": "deny"}],
            }
        )
    else:
        warnings = (MSG_TUNNEL_OAUTH_ANYONE.format(provider=provider),)
    return RenderedPolicy(document={"on_http_request": rules}, protection="oauth", warnings=warnings)


def _basic(credential: str) -> RenderedPolicy:
    # ngrok splits user:password at the first colon, so a password may hold colons, a user name not.
    user, colon, password = credential.partition(":")
    if not colon or not user.strip() or not password:
        raise TunnelPolicyRefused(MSG_TUNNEL_BASIC_FORMAT)
    if not BASIC_PASSWORD_MIN <= len(password) <= BASIC_PASSWORD_MAX:
        raise TunnelPolicyRefused(MSG_TUNNEL_BASIC_PASSWORD.format(length=len(password)))
    if "${" in credential:
        # ngrok evaluates ${...} in credentials as CEL: such a password would not be the one you typed.
        raise TunnelPolicyRefused(MSG_TUNNEL_BASIC_CEL)
    action = {"type": "basic-auth", "config": {"realm": BASIC_REALM, "credentials": [credential]}}
    return RenderedPolicy(
        document={"on_http_request": [{"name": "basic auth", "actions": [action]}]}, protection="basic"
    )


def _anonymous() -> dict[str, Any]:
    # ngrok needs a policy file to start with (`--traffic-policy-file` is always passed, so a missing file
    # stops the agent): this one asks nobody anything and only tags the requests.
    action = {"type": "add-headers", "config": {"headers": {ANONYMOUS_HEADER: "anonymous"}}}
    return {
        "on_http_request": [{"name": "anonymous on purpose (NGROK_ALLOW_ANONYMOUS=1)", "actions": [action]}]
    }


def _email(value: str) -> str:
    email = value.strip().lower()
    local, at, domain = email.rpartition("@")
    if not at or not _LOCAL_PART.match(local) or not _DOMAIN.match(domain):
        raise TunnelPolicyRefused(MSG_TUNNEL_BAD_EMAIL.format(value=value))
    return email


def _domain(value: str) -> str:
    # "@example.com" or "example.com"; matched as "@example.com" so evil-example.com does not pass.
    domain = value.strip().lower().removeprefix("@")
    if not _DOMAIN.match(domain):
        raise TunnelPolicyRefused(MSG_TUNNEL_BAD_DOMAIN.format(value=value))
    return domain

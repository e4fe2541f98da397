"""A project's image policy (``[policy]`` in the catalog): the runtime user, required labels, size budget.

The build writes what the policy asked of each image into the release record, so ``verify`` judges
an image by the policy it was built with, not by whatever the catalog says on the day of the check.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .reader import Table, did_you_mean

USER_RE = re.compile(r"^(\d{1,10}):(\d{1,10})$")
LABEL_RE = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*$")
# verify's checks that a project may waive for one image, with a reason (the digest, its tag and the
# manifest are what a release is, so they cannot be waived)
SKIPPABLE_CHECKS = (
    "platform",
    "user",
    "healthcheck",
    "tini",
    "env",
    "port",
    "labels",
    "parent-pinned",
    "parent-layers",
    "size",
    "no-build-tools",
    "no-privilege-tools",
    "provenance",
    "sbom",
)
POLICY_KEYS = ("user", "required_labels", "size_budget_mb")


@dataclass(frozen=True)
class Policy:
    uid: int = 10001
    gid: int = 10001
    required_labels: tuple[str, ...] = ()  # labels every image must carry, with any value
    size_budget_mb: int | None = None  # for images without a budget of their own

    @property
    def user(self) -> str:
        return f"{self.uid}:{self.gid}"


def parse_policy(t: Table) -> Policy:
    t.only(POLICY_KEYS)
    user = t.opt("user", str, Policy().user)
    match = USER_RE.match(user)
    if not match or int(match.group(1)) == 0:
        raise t.error("user", f'expected a non-root "uid:gid" like "10001:10001", got {user!r}')
    labels = t.str_list("required_labels")
    for i, label in enumerate(labels):
        if not LABEL_RE.match(label):
            raise t.error(
                f"required_labels[{i}]", f"expected a label key like org.opencontainers.image.licenses, got {label!r}"
            )
    budget = t.data.get("size_budget_mb")
    if budget is not None and t.req("size_budget_mb", int) <= 0:
        raise t.error("size_budget_mb", f"expected a positive number of MB, got {budget}")
    return Policy(
        uid=int(match.group(1)), gid=int(match.group(2)), required_labels=tuple(labels), size_budget_mb=budget
    )


def parse_skip_checks(t: Table) -> dict[str, str]:
    """``skip_checks = [{check = "tini", reason = "…"}]`` -> check -> reason; a waiver always says why."""
    if "skip_checks" not in t.data:
        return {}
    items = t.data["skip_checks"]
    if not isinstance(items, list):
        raise t.error("skip_checks", 'expected a list like [{check = "tini", reason = "…"}]')
    skipped: dict[str, str] = {}
    for i, item in enumerate(items):
        key = f"skip_checks[{i}]"
        if not isinstance(item, dict):
            raise t.error(key, 'expected a table like {check = "tini", reason = "…"}')
        entry = Table(item, t.file, t._join(key), t.text)
        entry.only(("check", "reason"))
        check = entry.req("check", str, expected=f"one of verify's checks: {', '.join(SKIPPABLE_CHECKS)}")
        if check not in SKIPPABLE_CHECKS:
            hint = did_you_mean(check, SKIPPABLE_CHECKS)
            raise entry.error("check", f"unknown check {check!r}{hint}; one of: {', '.join(SKIPPABLE_CHECKS)}")
        reason = entry.req("reason", str, expected="why this image may skip the check (shown in verify's report)")
        if not reason.strip():
            raise entry.error("reason", "expected why this image may skip the check, got an empty string")
        skipped[check] = reason.strip()
    return skipped

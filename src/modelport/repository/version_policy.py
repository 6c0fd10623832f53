"""Which of a model's version folders its version_policy serves."""

from __future__ import annotations

import logging

from modelport.config.spec import VersionPolicySpec
from modelport.errors import InvalidInput

log = logging.getLogger(__name__)


def select_versions(model: str, policy: VersionPolicySpec, available: list[int]) -> list[int]:
    """The versions to load, ascending; at least one or INVALID_ARG."""
    ordered = sorted(available)
    if policy.kind == "all":
        chosen = ordered
    elif policy.kind == "specific":
        missing = sorted(set(policy.versions) - set(ordered))
        if missing:
            log.error("model '%s': version(s) %s in version_policy are not in the repository", model, missing)
        chosen = sorted(set(policy.versions) & set(ordered))
    else:
        chosen = ordered[-max(policy.num_versions, 1) :] if ordered else []
    if not chosen:
        raise InvalidInput(
            f"at least one version must be available under the version policy of model '{model}'"
        )
    return chosen

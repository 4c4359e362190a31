"""The vocabulary of site events: every kind the site store records (and the audit trail
carries). Stored as their string values; details never hold patient data."""

from __future__ import annotations

from enum import StrEnum


class SiteEvent(StrEnum):
    """Kinds of site events."""

    # studies and approvals
    STUDY_PLAN_RECEIVED = "study_plan_received"
    STUDY_RECEIVED = "study_received"
    STUDY_REFUSED = "study_refused"
    # the agent's work
    TASK_REFUSED = "task_refused"
    UPDATE_SENT = "update_sent"
    STATS_SENT = "stats_sent"
    COUNTS_SENT = "counts_sent"
    COUNTS_OPENED = "counts_opened"
    OWN_COUNTS_SHARED = "own_counts_shared"
    IMPORTANCE_SHARED = "importance_shared"
    DRIFT_SHARED = "drift_shared"
    MODEL_RELEASED = "model_released"
    GLOBAL_MODEL_STORED = "global_model_stored"
    MODEL_EXPORTED = "model_exported"
    BUDGET_REFUSAL = "budget_refusal"
    LEDGER_SEALED = "ledger_sealed"
    # settings and the operator's decisions
    CEILING_CHANGED = "ceiling_changed"
    DELTA_CHANGED = "delta_changed"
    NON_PRIVATE_CHANGED = "non_private_changed"
    SHARING_CHANGED = "sharing_changed"
    LOCAL_EVALUATION = "local_evaluation"
    ROLE_DENIED = "role_denied"
    # data and consent
    DATASET_REGISTERED = "dataset_registered"
    CONSENT_WITHDRAWN = "consent_withdrawn"
    CONSENT_GRANTED = "consent_granted"
    CONSENT_IMPORTED = "consent_imported"
    # keys and identity
    KIT_IMPORTED = "kit_imported"
    PASSPHRASE_ROTATED = "passphrase_rotated"  # noqa: S105 (an event kind)
    HE_KEY_GENERATED = "he_key_generated"
    HE_KEY_SEALED = "he_key_sealed"
    HE_KEY_IMPORTED = "he_key_imported"
    HE_RECIPIENTS_CONFIRMED = "he_recipients_confirmed"
    # a step asked again after a coordinator restart, answered with the reply already sent
    REPLY_RESENT = "reply_resent"
    # a contribution set verified and its sum signed for the other sites (TASK_ATTEST)
    SUM_ATTESTED = "sum_attested"

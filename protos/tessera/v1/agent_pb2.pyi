from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TaskKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TASK_KIND_UNSPECIFIED: _ClassVar[TaskKind]
    TASK_HELLO: _ClassVar[TaskKind]
    TASK_STATS: _ClassVar[TaskKind]
    TASK_TRAIN: _ClassVar[TaskKind]
    TASK_EVALUATE: _ClassVar[TaskKind]
    TASK_OPEN_COUNTS: _ClassVar[TaskKind]
    TASK_EVALUATE_OWN: _ClassVar[TaskKind]
    TASK_IMPORTANCE: _ClassVar[TaskKind]
    TASK_RELEASE: _ClassVar[TaskKind]
    TASK_DRIFT: _ClassVar[TaskKind]
    TASK_ATTEST: _ClassVar[TaskKind]

class EnvelopeKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ENVELOPE_KIND_UNSPECIFIED: _ClassVar[EnvelopeKind]
    ENVELOPE_WEIGHTS: _ClassVar[EnvelopeKind]
    ENVELOPE_STATS: _ClassVar[EnvelopeKind]
    ENVELOPE_EVAL: _ClassVar[EnvelopeKind]
TASK_KIND_UNSPECIFIED: TaskKind
TASK_HELLO: TaskKind
TASK_STATS: TaskKind
TASK_TRAIN: TaskKind
TASK_EVALUATE: TaskKind
TASK_OPEN_COUNTS: TaskKind
TASK_EVALUATE_OWN: TaskKind
TASK_IMPORTANCE: TaskKind
TASK_RELEASE: TaskKind
TASK_DRIFT: TaskKind
TASK_ATTEST: TaskKind
ENVELOPE_KIND_UNSPECIFIED: EnvelopeKind
ENVELOPE_WEIGHTS: EnvelopeKind
ENVELOPE_STATS: EnvelopeKind
ENVELOPE_EVAL: EnvelopeKind

class ChunkLayout(_message.Message):
    __slots__ = ("name", "shape", "offset", "length")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    name: str
    shape: _containers.RepeatedScalarFieldContainer[int]
    offset: int
    length: int
    def __init__(self, name: _Optional[str] = ..., shape: _Optional[_Iterable[int]] = ..., offset: _Optional[int] = ..., length: _Optional[int] = ...) -> None: ...

class UpdateEnvelope(_message.Message):
    __slots__ = ("version", "study", "round", "site", "example_count", "context_fingerprint", "layout", "encrypted", "ciphertexts", "values", "digest", "kind", "run_id", "signature")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    STUDY_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    SITE_FIELD_NUMBER: _ClassVar[int]
    EXAMPLE_COUNT_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    LAYOUT_FIELD_NUMBER: _ClassVar[int]
    ENCRYPTED_FIELD_NUMBER: _ClassVar[int]
    CIPHERTEXTS_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    version: int
    study: str
    round: int
    site: str
    example_count: int
    context_fingerprint: str
    layout: _containers.RepeatedCompositeFieldContainer[ChunkLayout]
    encrypted: bool
    ciphertexts: _containers.RepeatedScalarFieldContainer[bytes]
    values: _containers.RepeatedScalarFieldContainer[float]
    digest: str
    kind: EnvelopeKind
    run_id: str
    signature: bytes
    def __init__(self, version: _Optional[int] = ..., study: _Optional[str] = ..., round: _Optional[int] = ..., site: _Optional[str] = ..., example_count: _Optional[int] = ..., context_fingerprint: _Optional[str] = ..., layout: _Optional[_Iterable[_Union[ChunkLayout, _Mapping]]] = ..., encrypted: _Optional[bool] = ..., ciphertexts: _Optional[_Iterable[bytes]] = ..., values: _Optional[_Iterable[float]] = ..., digest: _Optional[str] = ..., kind: _Optional[_Union[EnvelopeKind, str]] = ..., run_id: _Optional[str] = ..., signature: _Optional[bytes] = ...) -> None: ...

class ContributionSet(_message.Message):
    __slots__ = ("kind", "round", "envelopes", "digests", "sites", "example_total", "sum", "sum_digest", "attestations")
    KIND_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    ENVELOPES_FIELD_NUMBER: _ClassVar[int]
    DIGESTS_FIELD_NUMBER: _ClassVar[int]
    SITES_FIELD_NUMBER: _ClassVar[int]
    EXAMPLE_TOTAL_FIELD_NUMBER: _ClassVar[int]
    SUM_FIELD_NUMBER: _ClassVar[int]
    SUM_DIGEST_FIELD_NUMBER: _ClassVar[int]
    ATTESTATIONS_FIELD_NUMBER: _ClassVar[int]
    kind: EnvelopeKind
    round: int
    envelopes: _containers.RepeatedCompositeFieldContainer[UpdateEnvelope]
    digests: _containers.RepeatedScalarFieldContainer[str]
    sites: _containers.RepeatedScalarFieldContainer[str]
    example_total: int
    sum: _containers.RepeatedScalarFieldContainer[bytes]
    sum_digest: str
    attestations: _containers.RepeatedCompositeFieldContainer[Attestation]
    def __init__(self, kind: _Optional[_Union[EnvelopeKind, str]] = ..., round: _Optional[int] = ..., envelopes: _Optional[_Iterable[_Union[UpdateEnvelope, _Mapping]]] = ..., digests: _Optional[_Iterable[str]] = ..., sites: _Optional[_Iterable[str]] = ..., example_total: _Optional[int] = ..., sum: _Optional[_Iterable[bytes]] = ..., sum_digest: _Optional[str] = ..., attestations: _Optional[_Iterable[_Union[Attestation, _Mapping]]] = ...) -> None: ...

class Attestation(_message.Message):
    __slots__ = ("site", "signature")
    SITE_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    site: str
    signature: bytes
    def __init__(self, site: _Optional[str] = ..., signature: _Optional[bytes] = ...) -> None: ...

class TaskRequest(_message.Message):
    __slots__ = ("kind", "plan_hash", "plan_toml", "round", "model", "stats", "run_id", "counts", "nonce", "attest", "signature")
    KIND_FIELD_NUMBER: _ClassVar[int]
    PLAN_HASH_FIELD_NUMBER: _ClassVar[int]
    PLAN_TOML_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    STATS_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    NONCE_FIELD_NUMBER: _ClassVar[int]
    ATTEST_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    kind: TaskKind
    plan_hash: str
    plan_toml: bytes
    round: int
    model: ContributionSet
    stats: ContributionSet
    run_id: str
    counts: ContributionSet
    nonce: bytes
    attest: ContributionSet
    signature: bytes
    def __init__(self, kind: _Optional[_Union[TaskKind, str]] = ..., plan_hash: _Optional[str] = ..., plan_toml: _Optional[bytes] = ..., round: _Optional[int] = ..., model: _Optional[_Union[ContributionSet, _Mapping]] = ..., stats: _Optional[_Union[ContributionSet, _Mapping]] = ..., run_id: _Optional[str] = ..., counts: _Optional[_Union[ContributionSet, _Mapping]] = ..., nonce: _Optional[bytes] = ..., attest: _Optional[_Union[ContributionSet, _Mapping]] = ..., signature: _Optional[bytes] = ...) -> None: ...

class Histogram(_message.Message):
    __slots__ = ("group", "pos", "neg")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    POS_FIELD_NUMBER: _ClassVar[int]
    NEG_FIELD_NUMBER: _ClassVar[int]
    group: str
    pos: _containers.RepeatedScalarFieldContainer[int]
    neg: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, group: _Optional[str] = ..., pos: _Optional[_Iterable[int]] = ..., neg: _Optional[_Iterable[int]] = ...) -> None: ...

class EvalCounts(_message.Message):
    __slots__ = ("bins", "histograms", "log_loss_sum", "n", "brier_sum")
    BINS_FIELD_NUMBER: _ClassVar[int]
    HISTOGRAMS_FIELD_NUMBER: _ClassVar[int]
    LOG_LOSS_SUM_FIELD_NUMBER: _ClassVar[int]
    N_FIELD_NUMBER: _ClassVar[int]
    BRIER_SUM_FIELD_NUMBER: _ClassVar[int]
    bins: int
    histograms: _containers.RepeatedCompositeFieldContainer[Histogram]
    log_loss_sum: float
    n: int
    brier_sum: float
    def __init__(self, bins: _Optional[int] = ..., histograms: _Optional[_Iterable[_Union[Histogram, _Mapping]]] = ..., log_loss_sum: _Optional[float] = ..., n: _Optional[int] = ..., brier_sum: _Optional[float] = ...) -> None: ...

class ReleasedModel(_message.Message):
    __slots__ = ("layout", "values", "mean", "std", "features")
    LAYOUT_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    MEAN_FIELD_NUMBER: _ClassVar[int]
    STD_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    layout: _containers.RepeatedCompositeFieldContainer[ChunkLayout]
    values: _containers.RepeatedScalarFieldContainer[float]
    mean: _containers.RepeatedScalarFieldContainer[float]
    std: _containers.RepeatedScalarFieldContainer[float]
    features: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, layout: _Optional[_Iterable[_Union[ChunkLayout, _Mapping]]] = ..., values: _Optional[_Iterable[float]] = ..., mean: _Optional[_Iterable[float]] = ..., std: _Optional[_Iterable[float]] = ..., features: _Optional[_Iterable[str]] = ...) -> None: ...

class TaskReply(_message.Message):
    __slots__ = ("site", "ok", "error_code", "reason", "envelope", "metrics", "counts", "model", "signature", "dataset_version", "attested")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    SITE_FIELD_NUMBER: _ClassVar[int]
    OK_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ENVELOPE_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    DATASET_VERSION_FIELD_NUMBER: _ClassVar[int]
    ATTESTED_FIELD_NUMBER: _ClassVar[int]
    site: str
    ok: bool
    error_code: str
    reason: str
    envelope: UpdateEnvelope
    metrics: _containers.ScalarMap[str, float]
    counts: EvalCounts
    model: ReleasedModel
    signature: bytes
    dataset_version: str
    attested: ContributionSet
    def __init__(self, site: _Optional[str] = ..., ok: _Optional[bool] = ..., error_code: _Optional[str] = ..., reason: _Optional[str] = ..., envelope: _Optional[_Union[UpdateEnvelope, _Mapping]] = ..., metrics: _Optional[_Mapping[str, float]] = ..., counts: _Optional[_Union[EvalCounts, _Mapping]] = ..., model: _Optional[_Union[ReleasedModel, _Mapping]] = ..., signature: _Optional[bytes] = ..., dataset_version: _Optional[str] = ..., attested: _Optional[_Union[ContributionSet, _Mapping]] = ...) -> None: ...

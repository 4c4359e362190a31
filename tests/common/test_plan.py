"""Behaviour of the study plan: validation messages, hashing, TOML round trips, overrides."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pydantic
import pytest

from common.errors import ErrorCode, TesseraError
from common.plan import (
    StudyPlan,
    bundled_plan_path,
    load_plan,
    override,
    parse_plan,
    plan_hash,
    plan_to_toml,
)

MINIMAL = """
[study]
name = "tiny"
seed = 7

[dataset]
name = "tiny"
features = ["a", "b"]
label = "y"

[model]
kind = "logreg"

[training]
rounds = 2
local_epochs = 1
batch_size = 8
learning_rate = 0.1

[privacy]
target_epsilon = 2.0
delta = 1e-5
max_grad_norm = 1.0
update_clip = 5.0
"""

# The same plan: other key order, other whitespace, comments, integers written as floats.
MINIMAL_REORDERED = """
# a comment that must not matter
[privacy]
update_clip = 5
max_grad_norm = 1
delta = 0.00001
target_epsilon = 2

[training]
learning_rate = 0.1
batch_size = 8
local_epochs = 1
rounds = 2

[model]
kind    =    "logreg"

[dataset]
label = "y"
features = [ "a",
             "b" ]
name = "tiny"

[study]
seed = 7
name = "tiny"
"""

# Hand-written canonical form of MINIMAL, defaults included (the golden value of plan_hash).
MINIMAL_CANONICAL = (
    '{"dataset":{"alpha":0.5,"features":["a","b"],"label":"y","name":"tiny",'
    '"partition":"iid","sensitive":null,"test_fraction":0.2},'
    '"federation":{"min_sites":2},'
    '"he":{"coeff_mod_bit_sizes":[60,50,60],"enabled":true,"global_scale_bits":50,'
    '"poly_modulus_degree":8192},'
    '"model":{"groups":4,"hidden":16,"kind":"logreg"},'
    '"privacy":{"delta":1e-05,"dp":true,"max_grad_norm":1,"target_epsilon":2,'
    '"update_clip":5},'
    '"study":{"description":"","name":"tiny","seed":7},'
    '"training":{"batch_size":8,"learning_rate":0.1,"local_epochs":1,"rounds":2}}'
)


def _error(text: str) -> TesseraError:
    with pytest.raises(TesseraError) as caught:
        parse_plan(text)
    assert caught.value.code is ErrorCode.PLAN_INVALID
    return caught.value


def test_minimal_plan_gets_documented_defaults() -> None:
    plan = parse_plan(MINIMAL)
    assert plan.name == "tiny"
    assert plan.seed == 7
    assert plan.dataset.sensitive is None
    assert plan.dataset.test_fraction == 0.2
    assert plan.dataset.partition == "iid"
    assert plan.privacy.dp is True
    assert plan.he.enabled is True
    assert plan.he.poly_modulus_degree == 8192
    assert plan.he.coeff_mod_bit_sizes == [60, 50, 60]
    assert plan.he.global_scale_bits == 50
    assert plan.federation.min_sites == 2


def test_invalid_value_message_names_dotted_field() -> None:
    error = _error(MINIMAL.replace("target_epsilon = 2.0", "target_epsilon = 0"))
    assert error.message == "study plan: privacy.target_epsilon: Input should be greater than 0"


def test_every_error_is_listed_one_per_line() -> None:
    text = (
        MINIMAL.replace("target_epsilon = 2.0", "target_epsilon = -1.0")
        .replace('name = "tiny"\nseed', 'name = "Tiny Study"\nseed')
        .replace("rounds = 2", "rounds = 1001")
    )
    lines = _error(text).message.splitlines()
    assert len(lines) == 3
    assert all(line.startswith("study plan: ") for line in lines)
    assert {line.split(": ")[1] for line in lines} == {
        "privacy.target_epsilon",
        "study.name",
        "training.rounds",
    }


def test_toml_syntax_error_is_plan_invalid() -> None:
    assert "not valid TOML" in _error("[study\nname = 1").message


def test_unknown_key_is_rejected_by_name() -> None:
    error = _error(MINIMAL.replace("[model]\n", "[model]\nlayers = 3\n"))
    assert "model.layers: Extra inputs are not permitted" in error.message


def test_missing_section_is_reported() -> None:
    text = MINIMAL.split("[privacy]")[0]
    assert "study plan: privacy: Field required" in _error(text).message


def test_quoted_number_is_rejected() -> None:
    assert "training.rounds" in _error(MINIMAL.replace("rounds = 2", 'rounds = "2"')).message


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        ('features = ["a", "b"]', "features = []", "dataset.features"),
        ('features = ["a", "b"]', 'features = ["a", "a"]', "dataset.features"),
        ('label = "y"', 'label = "y"\nsensitive = "y"', "dataset.sensitive"),
        ('label = "y"', 'label = "y"\ntest_fraction = 0.5', "dataset.test_fraction"),
        ('label = "y"', 'label = "y"\ntest_fraction = 0.0', "dataset.test_fraction"),
        ('label = "y"', 'label = "y"\npartition = "random"', "dataset.partition"),
        ('label = "y"', 'label = "y"\nalpha = 0.0', "dataset.alpha"),
        ('kind = "logreg"', 'kind = "mlp"\nhidden = 16\ngroups = 5', "model.groups"),
        ('kind = "logreg"', 'kind = "transformer"', "model.kind"),
        ("delta = 1e-5", "delta = 1.0", "privacy.delta"),
        ("update_clip = 5.0", "update_clip = 0.0", "privacy.update_clip"),
        ("batch_size = 8", "batch_size = 0", "training.batch_size"),
        ("seed = 7", "seed = -1", "study.seed"),
    ],
)
def test_out_of_range_fields_are_rejected(old: str, new: str, field: str) -> None:
    assert f"study plan: {field}: " in _error(MINIMAL.replace(old, new)).message


def test_he_scale_must_be_below_largest_modulus_bit_size() -> None:
    text = MINIMAL + "\n[he]\ncoeff_mod_bit_sizes = [40, 30, 40]\nglobal_scale_bits = 40\n"
    assert "he.global_scale_bits: must be less than" in _error(text).message
    bad_degree = MINIMAL + "\n[he]\npoly_modulus_degree = 1024\n"
    assert "he.poly_modulus_degree" in _error(bad_degree).message


def test_he_chain_must_fit_the_128_bit_table_for_its_ring() -> None:
    # 2048 holds at most 54 bits at 128-bit security; 4096 at most 109.
    small = MINIMAL + ("\n[he]\npoly_modulus_degree = 2048\ncoeff_mod_bit_sizes = [34, 20]\n"
                       "global_scale_bits = 25\n")
    assert parse_plan(small).he.poly_modulus_degree == 2048
    too_long = small.replace("[34, 20]", "[35, 20]")
    assert "128-bit security limit for poly_modulus_degree 2048" in _error(too_long).message
    default_chain = MINIMAL + "\n[he]\npoly_modulus_degree = 4096\n"  # [60, 50, 60]: 170
    assert "exceed 109" in _error(default_chain).message


def test_groups_need_not_divide_hidden_for_logreg() -> None:
    plan = parse_plan(MINIMAL.replace('kind = "logreg"', 'kind = "logreg"\ngroups = 5'))
    assert plan.model.groups == 5


def test_sensitive_column_may_be_a_feature() -> None:
    plan = parse_plan(MINIMAL.replace('label = "y"', 'label = "y"\nsensitive = "a"'))
    assert plan.dataset.sensitive == "a"


def test_plan_is_frozen() -> None:
    plan = parse_plan(MINIMAL)
    with pytest.raises(pydantic.ValidationError):
        plan.training.rounds = 9  # type: ignore[misc]


def test_plan_hash_matches_golden_canonical_form() -> None:
    expected = hashlib.sha256(MINIMAL_CANONICAL.encode()).hexdigest()
    assert plan_hash(parse_plan(MINIMAL)) == expected


def test_plan_hash_ignores_order_whitespace_comments_and_number_spelling() -> None:
    assert plan_hash(parse_plan(MINIMAL_REORDERED)) == plan_hash(parse_plan(MINIMAL))


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("learning_rate = 0.1", "learning_rate = 0.10001"),
        ('features = ["a", "b"]', 'features = ["b", "a"]'),
        ("seed = 7", "seed = 8"),
        ('name = "tiny"\nseed', 'name = "tiny"\ndescription = "x"\nseed'),
        ("[privacy]", "[privacy]\ndp = false"),
    ],
)
def test_plan_hash_changes_with_any_semantic_edit(old: str, new: str) -> None:
    assert plan_hash(parse_plan(MINIMAL.replace(old, new))) != plan_hash(parse_plan(MINIMAL))


@pytest.mark.parametrize("name", ["breast_cancer", "diabetes", "digits"])
def test_bundled_plans_round_trip_through_toml(name: str) -> None:
    plan = load_plan(bundled_plan_path(name))
    again = parse_plan(plan_to_toml(plan))
    assert again == plan
    assert plan_hash(again) == plan_hash(plan)


def test_toml_round_trip_omits_absent_sensitive() -> None:
    plan = parse_plan(MINIMAL)
    text = plan_to_toml(plan)
    assert "sensitive" not in text
    assert parse_plan(text) == plan


def test_bundled_breast_cancer_plan_has_study_values() -> None:
    plan = load_plan(bundled_plan_path("breast_cancer"))
    assert plan.name == "breast_cancer"
    assert len(plan.dataset.features) == 30
    assert plan.dataset.label == "benign"
    assert plan.model.kind == "logreg"
    assert (plan.training.rounds, plan.privacy.target_epsilon) == (3, 3.0)


def test_bundled_diabetes_plan_keeps_sex_out_of_features() -> None:
    plan = load_plan(bundled_plan_path("diabetes"))
    assert plan.dataset.sensitive == "sex"
    assert "sex" not in plan.dataset.features
    assert plan.dataset.label == "progression_high"


def test_override_returns_new_validated_plan() -> None:
    plan = parse_plan(MINIMAL)
    changed = override(plan, rounds=5, target_epsilon=1, seed=3, he_enabled=False, min_sites=4)
    assert (changed.training.rounds, changed.privacy.target_epsilon) == (5, 1.0)
    assert (changed.seed, changed.he.enabled, changed.federation.min_sites) == (3, False, 4)
    assert plan.training.rounds == 2
    assert plan_hash(changed) != plan_hash(plan)
    assert override(plan) == plan


def test_override_with_invalid_value_is_plan_invalid() -> None:
    with pytest.raises(TesseraError) as caught:
        override(parse_plan(MINIMAL), rounds=0)
    assert caught.value.code is ErrorCode.PLAN_INVALID
    assert "training.rounds" in caught.value.message


def test_load_plan_of_missing_file_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(TesseraError) as caught:
        load_plan(tmp_path / "absent.toml")
    assert caught.value.code is ErrorCode.NOT_FOUND


def test_unknown_bundled_plan_lists_available_names() -> None:
    with pytest.raises(TesseraError) as caught:
        bundled_plan_path("../pyproject")
    assert caught.value.code is ErrorCode.NOT_FOUND
    assert "breast_cancer" in caught.value.message
    assert "diabetes" in caught.value.message


def test_study_plan_type_is_exported_model() -> None:
    assert isinstance(parse_plan(MINIMAL), StudyPlan)


def test_attesters_enter_the_hash_only_when_declared() -> None:
    plain = parse_plan(MINIMAL)
    assert plan_hash(parse_plan(MINIMAL + "\n[federation]\nattesters = 0\n")) == plan_hash(plain)
    attested = parse_plan(MINIMAL + "\n[federation]\nattesters = 2\n")
    assert attested.federation.attesters == 2 and plan_hash(attested) != plan_hash(plain)
    assert parse_plan(plan_to_toml(attested)) == attested


def test_attesters_need_an_encrypted_study() -> None:
    with pytest.raises(TesseraError) as err:
        parse_plan(MINIMAL + "\n[he]\nenabled = false\n\n[federation]\nattesters = 2\n")
    assert "attesters" in err.value.message and "[he] enabled" in err.value.message

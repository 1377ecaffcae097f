"""CPU and memory quantities of the pod flags: what passes compiles with KFP, what fails says so in one line."""

from __future__ import annotations

import pytest
from kfp.dsl import PipelineTask

from kubeclr.cluster.quantities import check_cpu, check_memory
from kubeclr.errors import UserError

GOOD_CPU = ["2", "1.5", "0.25", ".5", "500m", "8", "100m"]
GOOD_MEMORY = ["8Gi", "512Mi", "8G", "1000000000", "32Gi", "256Mi", "1Ti", "64M", "2Ki"]


@pytest.mark.parametrize("value", GOOD_CPU)
def test_cpu_forms_kubernetes_and_kfp_accept(value):
    assert check_cpu("--step-cpu", value) == value
    assert PipelineTask._validate_cpu_request_limit(None, value) == value  # KFP's own check: the oracle


@pytest.mark.parametrize("value", GOOD_MEMORY)
def test_memory_forms_kubernetes_and_kfp_accept(value):
    assert check_memory("--step-memory", value) == value
    assert PipelineTask._validate_memory_request_limit(None, value) == value


@pytest.mark.parametrize(
    "value, message",
    [
        ("lots", "--pretrain-cpu lots is not a Kubernetes CPU quantity (use e.g. 2, 1.5 or 500m)"),
        ("2 cores", "--pretrain-cpu '2 cores' is not a Kubernetes CPU quantity (use e.g. 2, 1.5 or 500m)"),
        ("1.5m", "--pretrain-cpu 1.5m is not a Kubernetes CPU quantity (use e.g. 2, 1.5 or 500m)"),
        ("", "--pretrain-cpu '' is not a Kubernetes CPU quantity (use e.g. 2, 1.5 or 500m)"),
        ("0", "--pretrain-cpu 0: must be more than 0 (e.g. 2, 1.5 or 500m)"),
        ("0m", "--pretrain-cpu 0m: must be more than 0 (e.g. 2, 1.5 or 500m)"),
    ],
)
def test_bad_cpu_is_one_line_naming_the_flag(value, message):
    with pytest.raises(UserError) as err:
        check_cpu("--pretrain-cpu", value)
    assert str(err.value) == message


@pytest.mark.parametrize(
    "value, message",
    [
        ("8GB", "--step-memory 8GB is not a Kubernetes memory quantity (use e.g. 8Gi, 512Mi or 8G)"),
        ("8K", "--step-memory 8K is not a Kubernetes memory quantity (use e.g. 8Gi, 512Mi or 8G)"),
        ("lots", "--step-memory lots is not a Kubernetes memory quantity (use e.g. 8Gi, 512Mi or 8G)"),
        ("0Gi", "--step-memory 0Gi: must be more than 0 (e.g. 8Gi, 512Mi or 8G)"),
        # valid Kubernetes quantities that KFP's compiler refuses: say why, with the form to use
        ("1.5Gi", "--step-memory 1.5Gi: KFP takes memory as a whole number with an optional unit"),
        ("1e9", "--step-memory 1e9: KFP takes memory as a whole number with an optional unit"),
    ],
)
def test_bad_memory_is_one_line_naming_the_flag(value, message):
    with pytest.raises(UserError) as err:
        check_memory("--step-memory", value)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)
    if value not in ("0Gi", "8K"):  # KFP refuses these too (8K only Kubernetes refuses: kilo is 'k')
        with pytest.raises(ValueError):
            PipelineTask._validate_memory_request_limit(None, value)

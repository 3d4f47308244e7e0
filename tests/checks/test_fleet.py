"""Fleet uniformity on plain data (checks/fleet.py): a value the others report and this node lacks is never "the
same"; no majority is not shown."""
from __future__ import annotations

from pytest_gpucluster.checks.fleet import FIRMWARE_KEYS, uniformity, versions_of
from pytest_gpucluster.checks.verdict import Status
from pytest_gpucluster.parsers import parse_smi_log

from tests.parsers._data import sample

BASE = {"driver": "580.105.08", "cuda": "13.0", "kernel": "6.1.0", "vbios": "96.00.A5.00.01"}
T = "p5.48xlarge"


def test_odd_node_fails_and_the_majority_passes() -> None:
    three = {"a": BASE, "b": BASE, "c": {**BASE, "driver": "570.172.08"}}
    assert uniformity("a/p5", "a", T, three).ok
    odd = uniformity("c/p5", "c", T, three)
    assert odd.status is Status.FAIL and "driver 570.172.08 on c where 2/3 p5.48xlarge nodes run 580.105.08" in odd.message


def test_a_key_this_node_lacks_is_not_shown_never_the_same() -> None:
    """The driver could not be read on `c` (its -q did not parse) while the others report one: the old judge said
    "same as the rest of the type"."""
    unread = {"a": BASE, "b": BASE, "c": {k: v for k, v in BASE.items() if k != "driver"}}
    v = uniformity("c/p5", "c", T, unread)
    assert v.status is Status.NOT_SHOWN and "driver not read on c while 2 p5.48xlarge node(s) report it" in v.message
    assert uniformity("x/p5", "x", T, unread).status is Status.NOT_SHOWN       # no probe at all


def test_no_majority_is_not_shown_for_either_node() -> None:
    """Two nodes, two drivers (an AMI roll-out half done): neither is the odd one."""
    two = {"a": BASE, "c": {**BASE, "driver": "570.172.08"}}
    for node in ("a", "c"):
        v = uniformity(f"{node}/p5", node, T, two)
        assert v.status is Status.NOT_SHOWN and "no majority among the 2 p5.48xlarge nodes" in v.message


def test_vbios_is_its_own_check_and_a_lone_node_passes() -> None:
    mixed = {"a": BASE, "b": BASE, "c": {**BASE, "vbios": "96.00.A5.00.03"}}
    assert uniformity("c/p5", "c", T, mixed).ok                                 # software keys only
    assert uniformity("c/p5", "c", T, mixed, keys=FIRMWARE_KEYS).status is Status.FAIL
    lone = uniformity("a/p5", "a", T, {"a": BASE})
    assert lone.ok and "the only p5.48xlarge node" in lone.observed


def test_versions_from_a_real_capture() -> None:
    q = parse_smi_log(sample("nvidia-smi", "q-h100-80gb-hbm3-590-load.txt"))
    assert versions_of(q, "kernel=6.1.0\nefa driver=2.13.0g\n") == {
        "driver": "590.48.01", "cuda": "13.1", "vbios": "96.00.A5.00.01", "kernel": "6.1.0", "efa driver": "2.13.0g"}
    assert versions_of(None, "kernel=6.1.0\nefa driver=\n") == {"kernel": "6.1.0"}


def test_nothing_read_anywhere_is_not_shown() -> None:
    """Every probe of the type failed (no -q parsed, no host section): nothing was compared, so nothing is the same."""
    assert uniformity("a/p5", "a", T, {"a": {}, "b": {}}).status is Status.NOT_SHOWN
    only_kernel = {"a": {"kernel": "6.1.0"}, "b": {"kernel": "6.1.0"}}
    assert uniformity("a/p5", "a", T, only_kernel, keys=FIRMWARE_KEYS).status is Status.NOT_SHOWN

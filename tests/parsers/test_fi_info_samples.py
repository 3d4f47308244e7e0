"""Every fi_info sample in tests/data: providers, domains, NIC counts, errors, hosts."""
from __future__ import annotations

from pytest_gpucluster.parsers import parse_fi_info

from ._data import DATA, sample


def fi(name: str):
    return parse_fi_info(sample("fi_info", name))


def test_every_sample_is_covered_below() -> None:
    assert {p.name for p in (DATA / "fi_info").iterdir()} == set(COVERED)


def test_efa_direct_three_entries_are_one_nic() -> None:
    for name, version in (("efa-direct-single-nic-rdm-rdm-dgram-v206.txt", "206.0"),
                          ("efa-efadirect-single-nic-v201-eks-pod.txt", "201.0")):
        r = fi(name)
        assert len(r.entries) == 3  # three "provider: efa" lines ...
        assert r.nic_count("efa") == 1  # ... one NIC
        assert r.nics() == ["rdmap47s0"]
        assert r.to_json() == {"kind": "fi_info", "hosts": None, "error": None, "providers": {"efa": {
            "domains": ["rdmap47s0-dgrm", "rdmap47s0-rdm"], "fabrics": ["efa", "efa-direct"],
            "endpoint_types": ["FI_EP_DGRAM", "FI_EP_RDM"]}}}
        assert r.versions() == [version]


def test_direct_capture_ignores_prompts_and_trailing_ls_output() -> None:
    r = fi("efa-direct-single-nic-rdm-rdm-dgram-v206.txt")
    assert r.provider_names() == ["efa"]


def test_mpijob_tagged_indented_elided_two_hosts() -> None:
    r = fi("efa-eksgpuefa-mpijob-tagged-indented-elided.txt")
    assert r.hosts == 2
    assert r.domains() == ["rdmap201s0-rdm", "rdmap79s0-rdm"]
    assert r.nic_counts_by_host() == {"0": 1, "1": 1}  # the capture elided the other 31 per host
    assert r.versions() == ["120.10"] and r.endpoint_types() == ["FI_EP_RDM"]


def test_p4de_four_rdm_domains() -> None:
    r = fi("efa-p4de-4domains-rdm-v119.txt")
    assert r.nic_count() == 4
    assert r.nics() == ["rdmap144s27", "rdmap160s27", "rdmap16s27", "rdmap32s27"]
    assert r.endpoint_types() == ["FI_EP_RDM"] and r.versions() == ["119.0"]
    assert r.hosts is None and r.error is None


def test_old_fabric_name_single_nic() -> None:
    r = fi("efa-single-nic-old-fabric-name-rdm-dgram-v113.txt")
    assert r.fabrics() == ["EFA-fe80::4b4:caff:fe96:3ba0"]
    assert r.nic_count() == 1 and r.endpoint_types() == ["FI_EP_DGRAM", "FI_EP_RDM"]


def test_getinfo_61_without_text_is_an_error_with_strerror() -> None:
    r = fi("fi_getinfo-61-no-efa.txt")
    assert r.to_json() == {"kind": "fi_info", "providers": {}, "hosts": None,
                           "error": {"code": -61, "message": "No data available"}}
    assert r.nic_count() == 0


def test_verbs_and_tcp_providers() -> None:
    r = fi("verbs-dgram-and-tcp-summary-libfabric-manpage.txt")
    assert r.provider_names() == ["tcp", "verbs"]
    assert r.nic_count() == 0  # no EFA at all
    assert r.nic_count("verbs") == 1 and r.nics("verbs") == ["mlx5_0"]
    assert r.fabrics("tcp") == ["192.168.7.0/24"] and r.endpoint_types("tcp") == ["FI_EP_MSG"]


COVERED = [
    "efa-direct-single-nic-rdm-rdm-dgram-v206.txt", "efa-efadirect-single-nic-v201-eks-pod.txt",
    "efa-eksgpuefa-mpijob-tagged-indented-elided.txt", "efa-p4de-4domains-rdm-v119.txt",
    "efa-single-nic-old-fabric-name-rdm-dgram-v113.txt", "fi_getinfo-61-no-efa.txt",
    "verbs-dgram-and-tcp-summary-libfabric-manpage.txt",
]

"""Real-world variants not in the samples, written from the tools' documented formats and source."""
from __future__ import annotations

import json

import pytest

from pytest_gpucluster.parsers import ParseError, detect_kind, parse_fi_info, parse_nccl, parse_nvidia_smi

R610_TABLE = """\
Wed Sep 30 21:53:38 2026
+-----------------------------------------------------------------------------------------+
| NVIDIA-SMI 610.57.04              KMD Version: 610.57.04     CUDA UMD Version: 13.3     |
+-----------------------------------------+------------------------+----------------------+
| GPU  Name                 Persistence-M | Bus-Id          Disp.A | Volatile Uncorr. ECC |
| Fan  Temp   Perf          Pwr:Usage/Cap |           Memory-Usage | GPU-Util  Compute M. |
|                                         |                        |               MIG M. |
|=========================================+========================+======================|
|   0  NVIDIA A100-SXM4-40GB          On  |   00000000:10:1C.0 Off |                   On |
| N/A   33C    P0             43W /  400W |      87MiB /  40960MiB |     N/A      Default |
|                                         |                        |              Enabled |
+-----------------------------------------+------------------------+----------------------+
|   1  NVIDIA A100-SXM4-40GB          On  |   00000000:10:1D.0 Off |                    2 |
| N/A   31C    P0             58W /  400W |       1MiB /  40960MiB |      0%      Default |
|                                         |                        |             Enabled* |
+-----------------------------------------+------------------------+----------------------+

+-----------------------------------------------------------------------------------------+
| MIG devices:                                                                            |
+------------------+----------------------------------+-----------+-----------------------+
| GPU  GI  CI  MIG |                     Memory-Usage |        Vol|        Shared         |
|      ID  ID  Dev |                       BAR1-Usage | SM     Unc| CE ENC  DEC  OFA  JPG |
|                  |                                  |        ECC|                       |
|==================+==================================+===========+=======================|
|  0    1   0   0  |              44MiB / 20096MiB    | 42      0 |  3   0    2    0    0 |
|                  |                 0MiB / 32767MiB  |           |                       |
+------------------+----------------------------------+-----------+-----------------------+
|  0    2   0   1  |              43MiB / 20096MiB    | 42      0 |  3   0    2    0    0 |
|                  |                 0MiB / 32767MiB  |           |                       |
+------------------+----------------------------------+-----------+-----------------------+

+-----------------------------------------------------------------------------------------+
| Processes:                                                                              |
|  GPU   GI   CI              PID   Type   Process name                        GPU Memory |
|        ID   ID                                                               Usage      |
|=========================================================================================|
|    0    1    0            4242      C   python train.py --config a b              40MiB |
+-----------------------------------------------------------------------------------------+
"""


def test_r610_kmd_and_cuda_umd_header_with_mig_table() -> None:
    r = parse_nvidia_smi(R610_TABLE)
    assert (r.format, r.driver_version, r.cuda_version) == ("table", "610.57.04", "13.3")
    assert [(g.index, g.mig_mode, g.mig_mode_pending, g.ecc_errors_uncorrected) for g in r.gpus] == [
        (0, "Enabled", None, None), (1, "Enabled", "Disabled", 2)]
    assert [m.to_json() for m in r.mig_devices] == [
        {"gpu": 0, "gi": 1, "ci": 0, "profile": None, "memory_total_mib": 20096},
        {"gpu": 0, "gi": 2, "ci": 0, "profile": None, "memory_total_mib": 20096}]
    assert [p.to_json() for p in r.processes] == [
        {"gpu": 0, "pid": 4242, "name": "python train.py --config a b", "memory_used_mib": 40}]


def test_no_devices_found_is_an_error_category() -> None:
    r = parse_nvidia_smi("No devices were found\n")
    assert r.error is not None and r.error.category == "no_devices" and r.gpus == []
    assert r.to_json()["error"] == {"category": "no_devices", "message": "No devices were found"}


def test_two_line_driver_error_with_typographic_apostrophe() -> None:
    text = ("NVIDIA-SMI has failed because it couldn\u2019t communicate with the NVIDIA driver. Make sure that the latest\n"
            "NVIDIA driver is installed and running.\n")
    r = parse_nvidia_smi(text)
    assert r.error is not None and r.error.category == "driver_unreachable"
    assert r.error.message.endswith("installed and running.") and "\n" not in r.error.message


def test_nvml_version_mismatch_is_other() -> None:
    r = parse_nvidia_smi("Failed to initialize NVML: Driver/library version mismatch\nNVML library version: 550.90\n")
    assert r.error is not None and r.error.category == "other" and "version mismatch" in r.error.message


def _xml(reasons: str, ecc: str, procs: str = "") -> str:
    return f"""<?xml version="1.0" ?>
<!DOCTYPE nvidia_smi_log SYSTEM "nvsmi_device_v12.dtd">
<nvidia_smi_log>
  <timestamp>Mon Jan  5 10:00:00 2026</timestamp>
  <driver_version>580.82.07</driver_version>
  <cuda_version>13.0</cuda_version>
  <attached_gpus>2</attached_gpus>
  <gpu id="00000000:53:00.0">
    <product_name>NVIDIA H100 80GB HBM3</product_name>
    <uuid>GPU-1111</uuid>
    <mig_mode><current_mig>Disabled</current_mig><pending_mig>Enabled</pending_mig></mig_mode>
    {reasons}
    <fb_memory_usage><total>81559 MiB</total><reserved>479 MiB</reserved><used>4 MiB</used><free>81074 MiB</free></fb_memory_usage>
    <ecc_errors><volatile>{ecc}</volatile></ecc_errors>
    <processes>{procs}</processes>
  </gpu>
</nvidia_smi_log>
"""


def test_xml_clocks_event_reasons_schema_and_new_ecc_counters() -> None:
    reasons = ("<clocks_event_reasons><clocks_event_reason_gpu_idle>Not Active</clocks_event_reason_gpu_idle>"
               "<clocks_event_reason_hw_slowdown>Active</clocks_event_reason_hw_slowdown>"
               "<clocks_event_reason_sw_thermal_slowdown>Active</clocks_event_reason_sw_thermal_slowdown></clocks_event_reasons>")
    ecc = ("<sram_correctable>0</sram_correctable><sram_uncorrectable_parity>1</sram_uncorrectable_parity>"
           "<sram_uncorrectable_secded>0</sram_uncorrectable_secded><dram_correctable>5</dram_correctable>"
           "<dram_uncorrectable>2</dram_uncorrectable>")
    procs = ("<process_info><gpu_instance_id>N/A</gpu_instance_id><compute_instance_id>N/A</compute_instance_id>"
             "<pid>777</pid><type>C</type><process_name>python</process_name><used_memory>1024 MiB</used_memory></process_info>")
    r = parse_nvidia_smi(_xml(reasons, ecc, procs))
    (g,) = r.gpus
    assert g.index is None  # attached_gpus says 2 but only one <gpu> (nvidia-smi -i): no positional index
    assert g.active_clock_event_reasons == ["hw_slowdown", "sw_thermal_slowdown"]
    assert g.ecc_errors_uncorrected == 3  # SRAM parity 1 + DRAM 2; correctable ones not counted
    assert (g.mig_mode, g.mig_mode_pending) == ("Disabled", "Enabled")
    assert [p.to_json() for p in r.processes] == [{"gpu": None, "pid": 777, "name": "python", "memory_used_mib": 1024}]


def test_xml_clocks_throttle_reasons_schema_and_double_bit_total() -> None:
    reasons = ("<clocks_throttle_reasons><clocks_throttle_reason_gpu_idle>Active</clocks_throttle_reason_gpu_idle>"
               "<clocks_throttle_reason_hw_slowdown>Not Active</clocks_throttle_reason_hw_slowdown></clocks_throttle_reasons>")
    ecc = "<single_bit><total>9</total></single_bit><double_bit><device_memory>4</device_memory><total>4</total></double_bit>"
    (g,) = parse_nvidia_smi(_xml(reasons, ecc)).gpus
    assert g.clock_event_reasons == {"gpu_idle": "Active", "hw_slowdown": "Not Active"}
    assert g.ecc_errors_uncorrected == 4


def test_truncated_xml_is_a_parse_error() -> None:
    with pytest.raises(ParseError, match="truncated"):
        parse_nvidia_smi('<?xml version="1.0" ?>\n<nvidia_smi_log>\n<driver_version>550</driver_version>\n')


def test_csv_noheader_needs_fields() -> None:
    text = "0, NVIDIA H100 80GB HBM3, 00000000:53:00.0, 81559 MiB\n1, NVIDIA H100 80GB HBM3, 00000000:64:00.0, 81559 MiB\n"
    with pytest.raises(ParseError):
        parse_nvidia_smi(text)
    r = parse_nvidia_smi(text, fields=["index", "name", "pci.bus_id", "memory.total"])
    assert [(g.index, g.bus_id, g.memory_total_mib) for g in r.gpus] == [(0, "00000000:53:00.0", 81559), (1, "00000000:64:00.0", 81559)]


def test_q_text_old_ecc_and_throttle_section() -> None:
    text = """
==============NVSMI LOG==============

Timestamp                                 : Tue Mar  1 10:00:00 2022
Driver Version                            : 470.82.01
CUDA Version                              : 11.4

Attached GPUs                             : 1
GPU 00000000:00:1E.0
    Product Name                          : Tesla T4
    MIG Mode
        Current                           : N/A
        Pending                           : N/A
    GPU UUID                              : GPU-2222
    Clocks Throttle Reasons
        Idle                              : Active
        HW Slowdown                       : Not Active
    FB Memory Usage
        Total                             : 15109 MiB
        Used                              : 0 MiB
    ECC Errors
        Volatile
            Single Bit
                Device Memory             : 0
                Total                     : 0
            Double Bit
                Device Memory             : 1
                Total                     : 1
    Processes                             : None
"""
    r = parse_nvidia_smi(text)
    (g,) = r.gpus
    assert (r.format, g.index, g.name, g.uuid, g.memory_total_mib, g.mig_mode) == ("query", 0, "Tesla T4", "GPU-2222", 15109, None)
    assert g.ecc_errors_uncorrected == 1 and g.active_clock_event_reasons == ["gpu_idle"]
    assert r.processes == []


# ---------------------------------------------------------------------------------------------- nccl

NEW_FORMAT_TWO_COLLECTIVES = """\
# nccl-tests version 2.17.6 nccl-headers=22705 nccl-library=22705
# Collective test starting: all_reduce_perf
# nThread 1 nGpus 1 minBytes 1073741824 maxBytes 2147483648 step: 2(factor) warmup iters: 1 iters: 20 agg iters: 1 validation: 1 graph: 0
#
# Using devices
#  Rank  0 Group  0 Pid  101 on  node-a device  0 [0000:53:00] NVIDIA H100 80GB HBM3
#  Rank  1 Group  0 Pid  102 on  node-b device  0 [0000:53:00] NVIDIA H100 80GB HBM3
#
#                                                              out-of-place                       in-place
#       size         count      type   redop    root     time   algbw   busbw #wrong     time   algbw   busbw #wrong
#        (B)    (elements)                               (us)  (GB/s)  (GB/s)            (us)  (GB/s)  (GB/s)
  1073741824     268435456     float     sum      -1   1.2e+05    8.95    8.95  1e+06   5051.2  212.57  212.57      0
  2147483648     536870912     float     sum      -1   9800.1  219.13  219.13      0   9790.0  219.35  219.35      0
# Out of bounds values : 3 FAILED
# Avg bus bandwidth    : 115.1 FAILED
#
# Collective test concluded: all_reduce_perf
# Collective test starting: all_gather_perf
# nThread 1 nGpus 1 minBytes 1073741824 maxBytes 1073741824 step: 2(factor) warmup iters: 1 iters: 20 agg iters: 1 validation: 1 graph: 0
#  Rank  0 Group  0 Pid  201 on  node-a device  0 [0000:53:00] NVIDIA H100 80GB HBM3
#  Rank  1 Group  0 Pid  202 on  node-b device  0 [0000:53:00] NVIDIA H100 80GB HBM3
#
#       size         count      type   redop    root     time   algbw   busbw #wrong     time   algbw   busbw #wrong
  1073741824     134217728     float    none      -1   5000.0  214.75  107.37      0   4990.0  215.18  107.59      0
# Out of bounds values : 0 OK
# Avg bus bandwidth    : 107.48
#
# Collective test concluded: all_gather_perf
"""


def test_two_collectives_scientific_wrong_and_out_of_bounds() -> None:
    r = parse_nccl(NEW_FORMAT_TWO_COLLECTIVES)
    ar, ag = r.collectives
    assert (ar.name, ar.ranks, ar.out_of_bounds, ar.avg_busbw) == ("all_reduce", 2, 3, 115.1)
    assert ar.rows[0].out_of_place.wrong == 1_000_000 and ar.rows[0].out_of_place.time_us == 1.2e5
    assert ar.wrong_rows == [ar.rows[0]]
    assert ar.busbw_at(1 << 30) == 8.95 and ar.peak_busbw == 219.13
    assert (ag.name, ag.ranks, ag.rows[0].redop, ag.busbw_at(1 << 30)) == ("all_gather", 2, "none", 107.37)
    assert r.log.nccl_tests_version == "2.17.6"
    assert r.busbw_at(1 << 30, name="all_gather") == 107.37


def test_launcher_error_without_table() -> None:
    text = """\
--------------------------------------------------------------------------
mpirun was unable to launch the specified application as it could not access
or execute an executable:

Executable: /opt/nccl-tests/build/all_reduce_perf
--------------------------------------------------------------------------
"""
    r = parse_nccl(text)
    assert r.collectives == [] and any("mpirun was unable" in e for e in r.errors)


def test_socket_fallback_and_mixed_networks_take_the_weakest() -> None:
    text = ("host-a:1:1 [0] NCCL INFO Using network Socket\n"
            "host-b:1:1 [0] NCCL INFO NET/OFI Selected provider is efa, fabric is efa (found 32 nics)\n"
            "host-b:1:1 [0] NCCL INFO Using network Libfabric\n"
            "host-a:1:9 [0] NCCL INFO Channel 00/0 : 1[0] -> 0[0] [receive] via NET/Socket/0\n")
    r = parse_nccl(text)
    assert (r.transport, r.gdrdma) == ("socket", False)
    assert r.log.networks == ["Socket", "Libfabric"] and r.log.ofi_nics == 32


def test_ib_with_gdrdma_and_tcp_provider_is_socket() -> None:
    ib = parse_nccl("n1:2:3 [0] NCCL INFO Channel 00/0 : 0[0] -> 8[0] [send] via NET/IB/0/GDRDMA\n")
    assert (ib.transport, ib.gdrdma) == ("ib", True)
    tcp = parse_nccl("n:1:1 [0] NCCL INFO NET/OFI Selected Provider is tcp\nn:1:1 [0] NCCL INFO Using network AWS Libfabric\n")
    assert tcp.transport == "socket"


NCCL_JSON = {
    "version": 2, "start_time": "2026-01-05 10:00:00",
    "args": ["/opt/nccl-tests/build/all_reduce_perf", "-b", "1G", "-e", "2G", "-J", "out.json"],
    "env": ["NCCL_DEBUG=INFO"], "nccl_version": 22703,
    "config": {"nthreads": 1, "ngpus": 1, "minimum_bytes": 1073741824, "maximum_bytes": 2147483648, "step_factor": 2,
               "warmup_iters": 1, "iterations": 20, "aggregated_iterations": 1, "validation": 1, "graph": 0,
               "blocking_collectives": "false", "per_iter_timing": "false", "parallel_init": "false",
               "devices": [{"rank": r, "group": 0, "pid": 100 + r, "hostname": "n", "device": r,
                            "device_hex": "0000:53:00", "device_info": "NVIDIA H100 80GB HBM3"} for r in range(16)]},
    "results": [
        {"size": 1073741824, "count": 268435456, "type": "float", "redop": "sum", "root": "    -1",
         "out_of_place": {"time": 4500.5, "alg_bw": 238.6, "bus_bw": 447.3, "nwrong": 0.0},
         "in_place": {"time": 4501.0, "alg_bw": 238.5, "bus_bw": 447.2, "nwrong": 0.0},
         "actual_iterations": 20, "experiment_name": ""},
        {"size": 2147483648, "count": 536870912, "type": "float", "redop": "sum", "root": "    -1",
         "out_of_place": {"time": 8900.0, "alg_bw": 241.3, "bus_bw": 452.4, "nwrong": None},
         "in_place": {"time": "nan", "alg_bw": 241.0, "bus_bw": 451.9, "nwrong": None},
         "actual_iterations": 20, "experiment_name": ""}],
    "out_of_bounds": {"count": 0, "okay": "true"},
    "average_bus_bandwidth": {"bandwidth": 449.85, "okay": "unchecked"},
    "errors": [], "end_time": "2026-01-05 10:00:05",
}


def test_nccl_tests_json_report() -> None:
    r = parse_nccl(json.dumps(NCCL_JSON))
    assert r.format == "json" and r.nccl_version == "2.27.3"
    (c,) = r.collectives
    assert (c.name, c.ranks, c.avg_busbw, c.out_of_bounds, c.validation) == ("all_reduce", 16, 449.85, 0, True)
    assert [row.root for row in c.rows] == [-1, -1]
    assert c.rows[0].out_of_place.wrong == 0 and c.rows[1].out_of_place.wrong is None
    assert c.rows[1].in_place is None  # "nan" time
    assert (c.peak_busbw, c.busbw_at(1 << 30)) == (452.4, 447.3)
    assert r.to_json()["collectives"][0]["rows"][0]["out_of_place"] == {"time_us": 4500.5, "algbw": 238.6, "busbw": 447.3, "wrong": 0}


def test_truncated_json_report_is_a_parse_error() -> None:
    with pytest.raises(ParseError, match="JSON"):
        parse_nccl(json.dumps(NCCL_JSON)[:200])


def test_old_all_gather_without_redop_or_root() -> None:
    text = """\
#                                             out-of-place                       in-place
#       size         count    type     time   algbw   busbw  error     time   algbw   busbw  error
#        (B)    (elements)             (us)  (GB/s)  (GB/s)            (us)  (GB/s)  (GB/s)
    33554432       1048576   float    400.1   83.87   73.39  0e+00    399.8   83.93   73.44  0e+00
"""
    (c,) = parse_nccl(text).collectives
    row = c.rows[0]
    assert (row.redop, row.root, row.out_of_place.busbw, row.out_of_place.wrong, c.error_column) == (None, None, 73.39, 0.0, "error")


# ---------------------------------------------------------------------------------------------- fi_info

FI_VERBOSE = """\
---
fi_info:
    caps: [ FI_MSG, FI_RMA, FI_READ, FI_RECV, FI_SEND, FI_REMOTE_READ, FI_SOURCE ]
    mode: [  ]
    addr_format: FI_ADDR_EFA
    fi_tx_attr:
        caps: [ FI_MSG, FI_RMA ]
        size: 4096
    fi_ep_attr:
        type: FI_EP_RDM
        protocol: FI_PROTO_EFA
        protocol_version: 4
    fi_domain_attr:
        domain: 0x0
        name: rdmap79s0-rdm
        threading: FI_THREAD_SAFE
    fi_fabric_attr:
        name: efa
        prov_name: efa
        prov_version: 200.0
        api_version: 2.0
    nic:
        fi_device_attr:
            name: rdmap79s0
            device_id: 0xefa1
---
fi_info:
    caps: [ FI_MSG ]
    fi_ep_attr:
        type: FI_EP_DGRAM
        protocol: FI_PROTO_EFA
    fi_domain_attr:
        domain: 0x0
        name: rdmap79s0-dgrm
    fi_fabric_attr:
        name: efa
        prov_name: efa
        prov_version: 200.0
        api_version: 2.0
"""


def test_fi_info_verbose() -> None:
    r = parse_fi_info(FI_VERBOSE)
    assert [(e.provider, e.fabric, e.domain, e.type, e.version) for e in r.entries] == [
        ("efa", "efa", "rdmap79s0-rdm", "FI_EP_RDM", "200.0"), ("efa", "efa", "rdmap79s0-dgrm", "FI_EP_DGRAM", "200.0")]
    assert r.nic_count() == 1


def test_fi_getinfo_with_text_and_other_code() -> None:
    assert parse_fi_info("fi_getinfo: -61 (No data available)\n").to_json()["error"] == {"code": -61, "message": "No data available"}
    assert parse_fi_info("fi_getinfo: -2\n").error.code == -2


# ---------------------------------------------------------------------------------------------- kinds

def test_detect_kind_and_parse_errors() -> None:
    assert detect_kind(R610_TABLE) == "nvidia-smi"
    assert detect_kind(FI_VERBOSE) == "fi-info"
    assert detect_kind(NEW_FORMAT_TWO_COLLECTIVES) == "nccl"
    assert detect_kind("total 0\ndrwxr-xr-x 2 root root 40 Jan  1 00:00 .\n") is None
    for parser in (parse_nvidia_smi, parse_fi_info, parse_nccl):
        with pytest.raises(ParseError):
            parser("Error from server (NotFound): pods \"x\" not found\n")
    with pytest.raises(ParseError):
        parse_nccl(R610_TABLE)
    with pytest.raises(ParseError):
        parse_fi_info(NEW_FORMAT_TWO_COLLECTIVES)

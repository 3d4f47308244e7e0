"""The protobuf request decoder on bodies real kubectl sends, and on wire cases kubectl's commands do not reach."""
from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from pytest_gpucluster.sim import protobuf
from pytest_gpucluster.sim.protobuf import ProtobufError, decode

# The same command through kubectl v1.32.5 (typed client, protobuf body; hex as -v=8 dumps it) and v1.31 (JSON body,
# as -v=8 prints it). Both serialize one Go struct, so the decoded protobuf must equal the JSON, less its nulls.
KUBECTL_BODIES: dict[str, tuple[str, dict[str, Any]]] = {
    # kubectl create namespace capns
    'namespace': (
        ('6b3873000a0f0a02763112094e616d657370616365121d0a150a056361706e7312001a0022002a0032003800420012001a020a'
         '001a002200'),
        {'kind': 'Namespace',
         'apiVersion': 'v1',
         'metadata': {'name': 'capns', 'creationTimestamp': None},
         'spec': {},
         'status': {}}),
    # kubectl -n cap create configmap c1 --from-literal=a=1 --from-literal=b= --from-file=bin=<bytes fa..ff 00 01>
    'configmap': (
        ('6b3873000a0f0a0276311209436f6e6669674d617012370a150a02633112001a0363617022002a0032003800420012060a0161'
         '12013112050a016212001a0f0a0362696e1208fafbfcfdfeff00011a002200'),
        {'kind': 'ConfigMap',
         'apiVersion': 'v1',
         'metadata': {'name': 'c1', 'namespace': 'cap', 'creationTimestamp': None},
         'data': {'a': '1', 'b': ''},
         'binaryData': {'bin': '+vv8/f7/AAE='}}),
    # kubectl -n cap create secret generic s1 --from-literal=pw=s3crét --type=Opaque
    'secret': (
        ('6b3873000a0c0a0276311206536563726574122e0a150a02733112001a0363617022002a00320038004200120d0a0270771207'
         '73336372c3a9741a064f70617175651a002200'),
        {'kind': 'Secret',
         'apiVersion': 'v1',
         'metadata': {'name': 's1', 'namespace': 'cap', 'creationTimestamp': None},
         'data': {'pw': 'czNjcsOpdA=='},
         'type': 'Opaque'}),
    # kubectl -n cap create service clusterip svc --tcp=80:8080 --tcp=443:https
    'service': (
        ('6b3873000a0d0a0276311207536572766963651290010a220a0373766312001a0363617022002a003200380042005a0a0a0361'
         '7070120373766312660a1b0a0738302d38303830120354435018502207080010903f1a0028000a220a093434332d6874747073'
         '120354435018bb03220b080110001a0568747470732800120a0a0361707012037376631a002209436c757374657249503a0042'
         '0052005a00600068001a020a001a002200'),
        {'kind': 'Service',
         'apiVersion': 'v1',
         'metadata': {'name': 'svc', 'namespace': 'cap', 'creationTimestamp': None, 'labels': {'app': 'svc'}},
         'spec': {'ports': [{'name': '80-8080', 'protocol': 'TCP', 'port': 80, 'targetPort': 8080},
                            {'name': '443-https', 'protocol': 'TCP', 'port': 443, 'targetPort': 'https'}],
                  'selector': {'app': 'svc'},
                  'type': 'ClusterIP'},
         'status': {'loadBalancer': {}}}),
    # kubectl -n cap create job j1 --image=busybox -- sh -c 'echo job'
    'job': (
        ('6b3873000a0f0a0862617463682f763112034a6f62128f010a150a026a3112001a0363617022002a00320038004200126c326a'
         '0a100a0012001a0022002a00320038004200125612330a026a31120762757379626f781a0273681a022d631a086563686f206a'
         '6f622a0042006a007200800100880100900100a201001a054e65766572320042004a0052005800600068008201008a01009a01'
         '00c201001a082000280030003a001a002200'),
        {'kind': 'Job',
         'apiVersion': 'batch/v1',
         'metadata': {'name': 'j1', 'namespace': 'cap', 'creationTimestamp': None},
         'spec': {'template': {'metadata': {'creationTimestamp': None},
                               'spec': {'containers': [{'name': 'j1',
                                                        'image': 'busybox',
                                                        'command': ['sh', '-c', 'echo job'],
                                                        'resources': {}}],
                                        'restartPolicy': 'Never'}}},
         'status': {}}),
    # kubectl -n cap create role r1 --verb=get,list --resource=pods,pods/log --resource-name=a
    'role': (
        ('6b3873000a240a1c726261632e617574686f72697a6174696f6e2e6b38732e696f2f76311204526f6c6512390a150a02723112'
         '001a0363617022002a0032003800420012200a036765740a046c69737412001a04706f64731a08706f64732f6c6f672201611a'
         '002200'),
        {'kind': 'Role',
         'apiVersion': 'rbac.authorization.k8s.io/v1',
         'metadata': {'name': 'r1', 'namespace': 'cap', 'creationTimestamp': None},
         'rules': [{'verbs': ['get', 'list'],
                    'apiGroups': [''],
                    'resources': ['pods', 'pods/log'],
                    'resourceNames': ['a']}]}),
    # kubectl -n cap create rolebinding rb1 --role=r1 --serviceaccount=cap:sa1 --user=u1
    'rolebinding': (
        ('6b3873000a2b0a1c726261632e617574686f72697a6174696f6e2e6b38732e696f2f7631120b526f6c6542696e64696e671286'
         '010a160a0372623112001a0363617022002a0032003800420012270a04557365721219726261632e617574686f72697a617469'
         '6f6e2e6b38732e696f1a0275312200121c0a0e536572766963654163636f756e7412001a0373613122036361701a250a197262'
         '61632e617574686f72697a6174696f6e2e6b38732e696f1204526f6c651a0272311a002200'),
        {'kind': 'RoleBinding',
         'apiVersion': 'rbac.authorization.k8s.io/v1',
         'metadata': {'name': 'rb1', 'namespace': 'cap', 'creationTimestamp': None},
         'subjects': [{'kind': 'User', 'apiGroup': 'rbac.authorization.k8s.io', 'name': 'u1'},
                      {'kind': 'ServiceAccount', 'name': 'sa1', 'namespace': 'cap'}],
         'roleRef': {'apiGroup': 'rbac.authorization.k8s.io', 'kind': 'Role', 'name': 'r1'}}),
    # kubectl create clusterrole cr1 --verb=get --non-resource-url=/healthz
    'clusterrole': (
        ('6b3873000a2b0a1c726261632e617574686f72697a6174696f6e2e6b38732e696f2f7631120b436c7573746572526f6c651226'
         '0a130a0363723112001a0022002a00320038004200120f0a036765742a082f6865616c74687a1a002200'),
        {'kind': 'ClusterRole',
         'apiVersion': 'rbac.authorization.k8s.io/v1',
         'metadata': {'name': 'cr1', 'creationTimestamp': None},
         'rules': [{'verbs': ['get'], 'nonResourceURLs': ['/healthz']}]}),
    # kubectl -n cap create serviceaccount sa1
    'serviceaccount': (
        ('6b3873000a140a027631120e536572766963654163636f756e7412180a160a0373613112001a0363617022002a003200380042'
         '001a002200'),
        {'kind': 'ServiceAccount',
         'apiVersion': 'v1',
         'metadata': {'name': 'sa1', 'namespace': 'cap', 'creationTimestamp': None}}),
}


def without_nulls(value: Any) -> Any:
    """The JSON with `null`s left out (a zero metav1.Time is null in Go's JSON and absent after decode)."""
    if isinstance(value, dict):
        return {k: without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [without_nulls(v) for v in value]
    return value


@pytest.mark.parametrize("name", list(KUBECTL_BODIES))
def test_kubectl_protobuf_body_decodes_to_what_kubectl_sends_as_json(name: str) -> None:
    body, json_body = KUBECTL_BODIES[name]
    assert decode(bytes.fromhex(body)) == without_nulls(json_body)


# A minimal encoder for the cases below; field numbers are those of upstream generated.proto (v1.32), a source
# independent of the types.go tags protobuf_schema.py is generated from.
def varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def f_varint(number: int, value: int) -> bytes:
    return varint(number << 3) + varint(value)


def f_bytes(number: int, value: bytes | str) -> bytes:
    data = value.encode() if isinstance(value, str) else value
    return varint(number << 3 | 2) + varint(len(data)) + data


def envelope(api_version: str, kind: str, raw: bytes) -> bytes:
    """runtime.Unknown{typeMeta: 1 {apiVersion: 1, kind: 2}, raw: 2} behind the k8s\\x00 prefix."""
    return protobuf.MAGIC + f_bytes(1, f_bytes(1, api_version) + f_bytes(2, kind)) + f_bytes(2, raw)


def test_inline_structs_quantities_times_pointers_and_unknown_fields() -> None:
    quantity = f_bytes(1, "1Gi")
    volume = f_bytes(1, "scratch") + f_bytes(2, f_bytes(2, f_bytes(2, quantity)))   # VolumeSource.emptyDir.sizeLimit
    probe = f_bytes(1, f_bytes(1, f_bytes(1, "true"))) + f_varint(2, 0) + f_varint(4, 1)  # handler.exec.command
    container = (f_bytes(1, "main") + f_bytes(2, "busybox") + f_bytes(3, "sh") + f_bytes(3, "-c")
                 + f_bytes(8, f_bytes(1, f_bytes(1, "nvidia.com/gpu") + f_bytes(2, f_bytes(1, "8"))))
                 + f_bytes(11, probe) + f_bytes(15, f_varint(2, 0))                   # securityContext.privileged
                 + f_bytes(999, b"from a newer release"))
    metadata = (f_bytes(1, "p") + f_bytes(2, "") + f_varint(7, 0) + f_bytes(8, f_varint(1, 1767225600))
                + f_varint(10, 0) + f_bytes(11, f_bytes(1, "app") + f_bytes(2, "x")))
    spec = f_bytes(1, volume) + f_bytes(2, container) + f_bytes(3, "Never") + f_varint(4, (1 << 64) - 5)
    assert decode(envelope("v1", "Pod", f_bytes(1, metadata) + f_bytes(2, spec))) == {
        "kind": "Pod", "apiVersion": "v1",
        # generateName "" and generation 0 are omitempty non-pointers: left out; deletionGracePeriodSeconds is a
        # pointer, so its 0 stays
        "metadata": {"name": "p", "creationTimestamp": "2026-01-01T00:00:00Z", "deletionGracePeriodSeconds": 0,
                     "labels": {"app": "x"}},
        "spec": {"volumes": [{"name": "scratch", "emptyDir": {"sizeLimit": "1Gi"}}],
                 "containers": [{"name": "main", "image": "busybox", "command": ["sh", "-c"],
                                 "resources": {"limits": {"nvidia.com/gpu": "8"}},
                                 "readinessProbe": {"exec": {"command": ["true"]}, "periodSeconds": 1},
                                 "securityContext": {"privileged": False}}],
                 "restartPolicy": "Never", "terminationGracePeriodSeconds": -5}}


def test_eviction_with_zero_grace_period_and_delete_options_of_any_group_version() -> None:
    options = f_varint(1, 0) + f_bytes(4, "Foreground") + f_bytes(5, "All")
    eviction = f_bytes(1, f_bytes(1, "p") + f_bytes(3, "default")) + f_bytes(2, options)
    assert decode(envelope("policy/v1", "Eviction", eviction)) == {
        "kind": "Eviction", "apiVersion": "policy/v1", "metadata": {"name": "p", "namespace": "default"},
        "deleteOptions": {"gracePeriodSeconds": 0, "propagationPolicy": "Foreground", "dryRun": ["All"]}}
    assert decode(envelope("apps/v1", "DeleteOptions", f_varint(3, 1)))["orphanDependents"] is True


def test_packed_repeated_varints_and_int_or_string() -> None:
    psc = f_bytes(4, varint(1000) + varint(2000))                        # PodSecurityContext.supplementalGroups
    port = f_varint(3, 443) + f_bytes(4, f_varint(1, 1) + f_bytes(3, "https"))   # ServicePort.targetPort (string)
    pod = f_bytes(2, f_bytes(14, psc))
    assert decode(envelope("v1", "Pod", pod))["spec"] == {"securityContext": {"supplementalGroups": [1000, 2000]}}
    service = decode(envelope("v1", "Service", f_bytes(2, f_bytes(1, port))))
    assert service["spec"]["ports"] == [{"port": 443, "targetPort": "https"}]


@pytest.mark.parametrize(("body", "message"), [
    (b'{"kind": "Pod"}', "does not start with the k8s protobuf prefix"),
    (envelope("v1", "PersistentVolume", b""), 'no kind "PersistentVolume" is registered for version "v1"'),
    (envelope("v1", "Pod", f_bytes(1, f_bytes(1, "p"))[:-1]), "runs past the end"),
    (protobuf.MAGIC + b"\x0b", "unsupported wire type 3"),
])
def test_malformed_bodies_are_refused(body: bytes, message: str) -> None:
    with pytest.raises(ProtobufError, match=message):
        decode(body)


@pytest.mark.parametrize(("nanos", "text"), [(0, "0s"), (1500, "1.5µs"), (1_500_000, "1.5ms"), (90 * 10**9, "1m30s"),
                                             (3600 * 10**9 + 10**6, "1h0m0.001s"), (-2 * 10**9, "-2s")])
def test_durations_read_as_go_prints_them(nanos: int, text: str) -> None:
    assert protobuf.go_duration(nanos) == text


def post_protobuf(api_client: client.ApiClient, path: str, body: bytes) -> Any:
    return api_client.call_api(path, "POST", header_params={"Content-Type": protobuf.CONTENT_TYPE,
                                                             "Accept": "application/json"},
                               body=body, auth_settings=["BearerToken"], _preload_content=False)


def test_the_server_creates_from_protobuf_and_refuses_what_upstream_refuses(api_client: client.ApiClient,
                                                                             core: client.CoreV1Api) -> None:
    created = post_protobuf(api_client, "/api/v1/namespaces", envelope("v1", "Namespace", f_bytes(1, f_bytes(1, "pb"))))
    assert created.status == 201 and core.read_namespace("pb").metadata.name == "pb"
    with pytest.raises(ApiException) as bad:
        post_protobuf(api_client, "/api/v1/namespaces", b"k8s\x00\x0b")
    assert bad.value.status == 400 and "decoded as application/vnd.kubernetes.protobuf" in bad.value.body
    with pytest.raises(ApiException) as custom:   # custom resources have no protobuf form upstream
        post_protobuf(api_client, "/apis/karpenter.sh/v1/nodepools", envelope("karpenter.sh/v1", "NodePool", b""))
    assert custom.value.status == 415 and "accepted media types include: application/json" in custom.value.body

"""Writes protobuf_schema.py: the wire layout of the built-in kinds, read from the struct tags of upstream types.go.

Run from checkouts of k8s.io/api and k8s.io/apimachinery at the release the simulator speaks:

    python -m pytest_gpucluster.sim.protobuf_gen ~/src/k8s.io/api ~/src/k8s.io/apimachinery v1.32

The Go types are the source, not generated.proto: only they say which fields are pointers (present on the wire
even when zero), which carry `omitempty`, and which are inlined into their parent's JSON (`VolumeSource` in a
Volume, `ProbeHandler` in a Probe), and those decide what JSON a decoded body turns into.
"""
from __future__ import annotations

import pprint
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

# Kinds a client may send as protobuf to a URL the simulator serves (typed client-go creates, updates and
# subresource posts), and the option bodies typed deletes send. The schema holds their transitive closure.
ROOTS = {
    "core/v1": ["Namespace", "Node", "Pod", "Event", "Service", "ConfigMap", "ServiceAccount", "Secret", "Binding"],
    "apps/v1": ["DaemonSet"],
    "batch/v1": ["Job"],
    "events/v1": ["Event"],
    "rbac/v1": ["Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"],
    "coordination/v1": ["Lease"],
    "policy/v1": ["Eviction"],
    "meta/v1": ["DeleteOptions"],
}
# The apiVersion each package's kinds carry in the runtime.Unknown envelope; "*": options kinds (DeleteOptions),
# which every group version registers (metav1.AddToGroupVersion), are looked up by kind alone.
API_VERSIONS = {"core/v1": "v1", "apps/v1": "apps/v1", "batch/v1": "batch/v1", "events/v1": "events.k8s.io/v1",
                "rbac/v1": "rbac.authorization.k8s.io/v1", "coordination/v1": "coordination.k8s.io/v1",
                "policy/v1": "policy/v1", "meta/v1": "*"}
API_PACKAGES = [key for key in API_VERSIONS if key != "meta/v1"]
META_FILES = ["pkg/apis/meta/v1/types.go"]
# Messages with their own JSON form (MarshalJSON upstream); protobuf.py converts them by name.
SPECIAL = {"meta/v1.Time", "meta/v1.MicroTime", "meta/v1.Duration", "meta/v1.FieldsV1", "resource.Quantity",
           "intstr.IntOrString", "runtime.RawExtension"}
SCALARS = {"string": "string", "bool": "bool", "int": "int", "int32": "int", "int64": "int", "uint32": "int",
           "uint64": "int", "float64": "double", "float32": "float", "byte": "int"}
KNOWN_NAMED = {"types.UID": "string", "types.NodeName": "string"}

STRUCT_RE = re.compile(r"^type (\w+) struct \{\n(.*?)^\}", re.MULTILINE | re.DOTALL)
NAMED_RE = re.compile(r"^type (\w+) =? ?([^\s{][^\n]*)$", re.MULTILINE)
FIELD_RE = re.compile(r"^\t(?:(\w+)\s+)?([\w.*\[\]]+)\s+`([^`]*)`", re.MULTILINE)
IMPORT_RE = re.compile(r'^\s*(\w+\s+)?"([^"]+)"', re.MULTILINE)


@dataclass
class GoPackage:
    key: str
    structs: dict[str, list[tuple[str | None, str, str, dict[str, str]]]] = field(default_factory=dict)
    named: dict[str, tuple[str, dict[str, str]]] = field(default_factory=dict)


def package_key(import_path: str) -> str:
    if import_path.startswith("k8s.io/api/"):
        return import_path[len("k8s.io/api/"):]
    if import_path == "k8s.io/apimachinery/pkg/apis/meta/v1":
        return "meta/v1"
    return import_path.rsplit("/", 1)[-1]


def read_package(key: str, sources: list[str], self_path: str) -> GoPackage:
    pkg = GoPackage(key)
    for text in sources:
        imports = {"": self_path}
        block = re.search(r"^import \((.*?)^\)", text, re.MULTILINE | re.DOTALL)
        for alias, path in IMPORT_RE.findall(block.group(1) if block else ""):
            imports[alias.strip() or path.rsplit("/", 1)[-1]] = path
        for name, body in STRUCT_RE.findall(text):
            fields = []
            for fname, gotype, tags in FIELD_RE.findall(body):
                fields.append((fname or None, gotype, tags, imports))
            pkg.structs[name] = fields
        for name, underlying in NAMED_RE.findall(text):
            if not underlying.startswith(("struct", "interface", "func")):
                pkg.named[name] = (underlying.split("//")[0].strip(), imports)
    return pkg


def parse_tags(tags: str) -> dict[str, str]:
    return dict(re.findall(r'(\w+):"([^"]*)"', tags))


class Generator:
    def __init__(self, packages: dict[str, GoPackage]) -> None:
        self.packages = packages
        self.messages: dict[str, list[tuple[int, str, str, object, int]]] = {}

    def resolve(self, gotype: str, pkg: str, imports: dict[str, str]) -> tuple[str, object]:
        """(kind, ref) for a Go type: kind is a scalar kind, 'bytes', 'message', 'map' or 'list'."""
        if gotype.startswith("*"):
            return self.resolve(gotype[1:], pkg, imports)
        if gotype == "[]byte":
            return "bytes", None
        if gotype.startswith("[]"):
            return "list", self.resolve(gotype[2:], pkg, imports)
        if gotype.startswith("map["):
            key, value = re.match(r"map\[([\w.*]+)\](.+)", gotype).groups()  # type: ignore[union-attr]
            return "map", (self.resolve(key, pkg, imports), self.resolve(value, pkg, imports))
        if gotype in SCALARS:
            return SCALARS[gotype], None
        if "." in gotype:
            alias, name = gotype.split(".", 1)
            pkg = package_key(imports[alias])
        else:
            name = gotype
        qualified = f"{pkg}.{name}"
        if qualified in KNOWN_NAMED:
            return KNOWN_NAMED[qualified], None
        if qualified in SPECIAL:
            self.messages.setdefault(qualified, [])
            return "message", qualified
        gopkg = self.packages.get(pkg)
        if gopkg is None:
            raise SystemExit(f"protobuf_gen: type {qualified} is in a package this generator does not read")
        if name in gopkg.structs:
            self.message(pkg, name)
            return "message", qualified
        if name in gopkg.named:
            underlying, named_imports = gopkg.named[name]
            return self.resolve(underlying, pkg, named_imports)
        raise SystemExit(f"protobuf_gen: cannot resolve Go type {qualified}")

    def message(self, pkg: str, name: str) -> None:
        qualified = f"{pkg}.{name}"
        if qualified in self.messages:
            return
        self.messages[qualified] = fields = []
        for fname, gotype, raw_tags, imports in self.packages[pkg].structs[name]:
            tags = parse_tags(raw_tags)
            proto = tags.get("protobuf", "-")
            if proto == "-":
                continue
            parts = proto.split(",")
            number = int(parts[1])
            json_name, *json_opts = tags.get("json", "").split(",")
            if json_name == "-":
                continue
            flags = 0
            inline = json_name == "" and "inline" in json_opts
            if inline:
                flags |= INLINE
            elif not json_name:
                json_name = fname or gotype.rsplit(".", 1)[-1]
            if "omitempty" in json_opts:
                flags |= OMITEMPTY
            if gotype.startswith("*"):
                flags |= POINTER
            kind, ref = self.resolve(gotype, pkg, imports)
            if kind == "list":
                flags |= REPEATED
                kind, ref = ref  # type: ignore[misc]
            if kind == "map":
                key, value = cast("tuple[tuple[str, object], tuple[str, object]]", ref)
                if value[0] == "list":  # map[string][]string: upstream wraps the list in a message
                    raise SystemExit(f"protobuf_gen: {qualified}.{json_name}: map of lists is not supported")
                ref = (key[0], value[0], value[1])
            fields.append((number, json_name, kind, ref, flags))
        fields.sort()


REPEATED, POINTER, OMITEMPTY, INLINE = 1, 2, 4, 8


def generate(api_root: Path, machinery_root: Path, release: str) -> str:
    packages: dict[str, GoPackage] = {}
    for key in API_PACKAGES:
        sources = [p.read_text() for p in sorted((api_root / key).glob("*.go"))
                   if not p.name.endswith("_test.go") and not p.name.startswith(("zz_", "generated"))]
        packages[key] = read_package(key, sources, f"k8s.io/api/{key}")
    packages["meta/v1"] = read_package("meta/v1", [(machinery_root / f).read_text() for f in META_FILES],
                                       "k8s.io/apimachinery/pkg/apis/meta/v1")
    gen = Generator(packages)
    for pkg, names in ROOTS.items():
        for name in names:
            gen.message(pkg, name)
    kinds = {f"{API_VERSIONS[pkg]} {name}": f"{pkg}.{name}" for pkg, names in ROOTS.items() for name in names}
    messages = {k: tuple(v) for k, v in sorted(gen.messages.items())}
    return (HEADER.format(release=release)
            + f"MESSAGES: dict[str, tuple[Field, ...]] = {pprint.pformat(messages, width=116, compact=True)}\n\n"
            + f"KINDS: dict[str, str] = {pprint.pformat(kinds, width=116, compact=True)}\n")


HEADER = '''"""Wire layout of the built-in kinds sent as protobuf (k8s.io/api {release}; generated, do not edit)."""
# Regenerate: python -m pytest_gpucluster.sim.protobuf_gen <k8s.io/api> <k8s.io/apimachinery> {release} (checkouts)
# A field is (number, JSON name, kind, ref, flags): kind is string/int/bool/double/float/bytes/message/map; ref names
# the message (or is (key kind, value kind, value message) for a map); flags: 1 repeated, 2 pointer, 4 omitempty,
# 8 inlined into the parent's JSON. KINDS: "apiVersion kind" of the envelope -> message ("*" for any apiVersion).
from __future__ import annotations

from typing import Any

Field = tuple[int, str, str, Any, int]

'''


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    out = Path(__file__).with_name("protobuf_schema.py")
    out.write_text(generate(Path(argv[0]), Path(argv[1]), argv[2]))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

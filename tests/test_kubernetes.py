"""deploy/kubernetes/: valid Kubernetes, secure pod settings, and consistent with the app it runs.

Each manifest is validated (strict: no unknown fields) against the Kubernetes OpenAPI schemas that
``kubernetes-validate`` ships, offline, for the oldest and the newest version it knows. checkov runs
when it is installed on its own (``pipx install checkov``): it cannot share the test environment
(it requires ``packaging<24``, hatchling ``>=24.2``). The rest is read from the app itself: the
probes' paths are routes that answer, the command is the Dockerfile's, every setting named is
declared and in README's Configure table.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from flask.testing import FlaskClient

from service.cli import main as cli_main
from service.config import PREFIX, SETTINGS, load_settings
from service.http.server import GRACEFUL_SECONDS

from support.paths import ROOT

FOLDER = ROOT / "deploy" / "kubernetes"
VERSIONS = ("1.25.0", kubernetes_validate.latest_version())  # the oldest schemas it ships, and the newest
README = (ROOT / "README.md").read_text()
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def manifests() -> list[Path]:
    return sorted(p for p in FOLDER.glob("*.yaml") if p.name != "kustomization.yaml")


def resources() -> list[dict[str, Any]]:
    return [doc for path in manifests() for doc in yaml.safe_load_all(path.read_text()) if doc]


def one(kind: str) -> dict[str, Any]:
    (found,) = [r for r in resources() if r["kind"] == kind]
    return found


def pod_specs() -> dict[str, dict[str, Any]]:
    """The pod template of each workload, by kind."""
    return {r["kind"]: r["spec"]["template"]["spec"] for r in resources() if r["kind"] in ("Deployment", "Job")}


def server_container() -> dict[str, Any]:
    (container,) = one("Deployment")["spec"]["template"]["spec"]["containers"]
    return container


def dockerfile_instruction(name: str) -> str:
    (value,) = re.findall(rf"^{name}\s+(.+)$", DOCKERFILE, re.M)
    return value.strip()


def test_the_kustomization_lists_every_manifest_but_the_secret_templates() -> None:
    # applying the kustomization must never overwrite the real Secrets with placeholders
    kustomization = yaml.safe_load((FOLDER / "kustomization.yaml").read_text())
    examples = [p.name for p in manifests() if p.name.endswith(".example.yaml")]
    assert examples == ["secret.example.yaml"]
    assert sorted(kustomization["resources"]) == [p.name for p in manifests() if p.name not in examples]


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("path", manifests(), ids=lambda p: p.name)
def test_every_manifest_is_valid_kubernetes(path: Path, version: str) -> None:
    for doc in yaml.safe_load_all(path.read_text()):
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            pytest.fail(f"{path.name} {doc['kind']}/{doc['metadata']['name']} (Kubernetes {version}): {e.message}")


def test_the_validator_refuses_what_kubernetes_would() -> None:
    # the check above can fail: an unknown field and a wrong type are refused
    deployment = one("Deployment")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate({**deployment, "spec": {**deployment["spec"], "replica": 2}}, VERSIONS[1], True)
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate({**deployment, "spec": {**deployment["spec"], "replicas": "2"}}, VERSIONS[1], True)


@pytest.mark.skipif(not shutil.which("checkov"), reason="checkov is not installed (pipx install checkov)")
def test_checkov_finds_nothing() -> None:
    done = subprocess.run(
        ["checkov", "-d", str(FOLDER), "--framework", "kubernetes", "--skip-download", "--quiet", "-o", "json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    report = json.loads(done.stdout)
    failed = [(c["check_id"], c["resource"]) for c in report["results"]["failed_checks"]]
    assert failed == [] and report["summary"]["passed"] > 100


def test_pods_run_unprivileged() -> None:
    for kind, spec in pod_specs().items():
        assert spec["automountServiceAccountToken"] is False, kind
        assert spec["securityContext"]["runAsNonRoot"] is True, kind
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, kind
        for container in spec["containers"]:
            context = container["securityContext"]
            assert context["runAsNonRoot"] is True and context["allowPrivilegeEscalation"] is False, kind
            assert context["readOnlyRootFilesystem"] is True and context["privileged"] is False, kind
            assert context["capabilities"] == {"drop": ["ALL"]}, kind
            assert (
                set(container["resources"]["requests"])
                == set(container["resources"]["limits"])
                == {
                    "cpu",
                    "memory",
                }
            )
            # the read-only image has one writable place: /tmp on an emptyDir
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            volumes = {v["name"]: v for v in spec["volumes"]}
            assert "emptyDir" in volumes[mounts["/tmp"]], kind
    # the numeric user the Dockerfile runs as (runAsNonRoot can check only a number)
    user, group = dockerfile_instruction("USER").split(":")
    for spec in pod_specs().values():
        assert (spec["securityContext"]["runAsUser"], spec["securityContext"]["runAsGroup"]) == (int(user), int(group))


def test_the_metrics_folder_is_writable() -> None:
    container = server_container()
    (folder,) = [e["value"] for e in container["env"] if e["name"] == "PROMETHEUS_MULTIPROC_DIR"]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in one("Deployment")["spec"]["template"]["spec"]["volumes"]}
    assert "emptyDir" in volumes[mounts[folder]]
    assert "`PROMETHEUS_MULTIPROC_DIR`" in README


def test_the_replicas_scale_and_survive_disruption() -> None:
    deployment, hpa, pdb, service = (
        one("Deployment"),
        one("HorizontalPodAutoscaler"),
        one("PodDisruptionBudget"),
        one("Service"),
    )
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["replicas"] >= 2
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert hpa["apiVersion"] == "autoscaling/v2" and hpa["spec"]["minReplicas"] >= 2
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "vcf-cds"}
    assert hpa["spec"]["minReplicas"] > pdb["spec"]["minAvailable"] >= 1
    for selector in (deployment["spec"]["selector"]["matchLabels"], pdb["spec"]["selector"]["matchLabels"]):
        assert selector.items() <= labels.items()
    assert service["spec"]["selector"].items() <= labels.items()
    # the Job's pods are not the Service's
    job_labels = one("Job")["spec"]["template"]["metadata"]["labels"]
    assert not service["spec"]["selector"].items() <= job_labels.items()
    ports = {p["name"]: p["containerPort"] for p in server_container()["ports"]}
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["http"] and "http" in ports


def test_the_container_listens_where_the_image_and_settings_say() -> None:
    settings = one("ConfigMap")["data"]
    (port,) = [p["containerPort"] for p in server_container()["ports"]]
    assert port == int(dockerfile_instruction("EXPOSE")) == int(settings["VCF_CDS_PORT"])
    assert settings["VCF_CDS_HOST"] == "0.0.0.0"


def test_the_probes_are_routes_of_the_app_that_answer(client: FlaskClient) -> None:
    container = server_container()
    probes = {name: container[name]["httpGet"] for name in ("startupProbe", "livenessProbe", "readinessProbe")}
    assert probes["readinessProbe"]["path"] == "/readyz"
    assert probes["livenessProbe"]["path"] == probes["startupProbe"]["path"] == "/healthz"
    names = {p["name"] for p in container["ports"]}
    for name, probe in probes.items():
        assert probe["port"] in names, name
        assert client.get(probe["path"]).status_code == 200, name  # the app's own test client, schema current
    # gunicorn's graceful shutdown fits in the pod's grace period, after the preStop pause
    pause = int(container["lifecycle"]["preStop"]["exec"]["command"][1])
    grace = one("Deployment")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace > pause + GRACEFUL_SECONDS


def test_the_commands_are_the_images_and_the_clis() -> None:
    cmd = json.loads(dockerfile_instruction("CMD"))
    assert "ENTRYPOINT" not in DOCKERFILE  # `command` then replaces exactly the CMD
    assert server_container()["command"] == cmd == ["vcf-cds", "serve"]
    (job,) = pod_specs()["Job"]["containers"]
    assert job["command"] == ["vcf-cds", "migrate"]
    with pytest.raises(SystemExit) as exit_:
        cli_main([job["command"][1], "--help"])  # a subcommand the CLI has
    assert exit_.value.code == 0
    # the image compose builds from the Dockerfile, at the package's version
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    version = re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M)
    assert version
    assert server_container()["image"] == job["image"] == compose["services"]["vcf-cds"]["image"]
    assert job["image"] == f"vcf-cds:{version.group(1)}"
    assert one("Job")["metadata"]["name"].endswith(version.group(1).replace(".", "-"))


def test_the_replicas_leave_the_schema_to_the_job() -> None:
    assert load_settings(one("ConfigMap")["data"])["MIGRATE"] == "off"


def named_variables() -> set[str]:
    names: set[str] = set()
    for r in resources():
        if r["kind"] == "ConfigMap":
            names |= set(r["data"])
        if r["kind"] == "Secret" and r["metadata"]["name"] == "vcf-cds-secrets":
            names |= set(r["stringData"])
    for spec in pod_specs().values():
        for container in spec["containers"]:
            names |= {e["name"] for e in container.get("env", [])}
            names |= {e["valueFrom"]["secretKeyRef"]["key"] for e in container.get("env", []) if "valueFrom" in e}
    return names


def test_every_setting_named_is_declared_and_in_the_readme_table() -> None:
    table = README.split("## Configure")[1].split("\n## ")[0]
    rows = set(re.findall(r"^\| `(VCF_CDS_[A-Z0-9_]+)` \|", table, re.M))
    named = {n for n in named_variables() if n.startswith(PREFIX)}
    assert {"VCF_CDS_DATABASE_URL", "VCF_CDS_AUDIT_KEY", "VCF_CDS_PUBLIC_URL"} <= named  # the scan sees them
    assert named - rows == set()
    assert named - {PREFIX + s.name for s in SETTINGS} == set()
    assert named_variables() - named == {"PROMETHEUS_MULTIPROC_DIR"}


def test_the_settings_parse_and_the_secret_placeholders_cannot_start_a_server() -> None:
    settings = one("ConfigMap")["data"]
    assert load_settings(settings)["PUBLIC_URL"] == settings["VCF_CDS_PUBLIC_URL"]
    secrets = [r for r in resources() if r["kind"] == "Secret"]
    assert secrets and all("REPLACE-ME" in value for s in secrets for value in s["stringData"].values())
    (values,) = [s["stringData"] for s in secrets if s["metadata"]["name"] == "vcf-cds-secrets"]
    with pytest.raises(ValueError, match="AUDIT_KEY"):
        load_settings({**settings, **values})  # the placeholder key is refused: no server runs on it
    assert ".invalid" in values["VCF_CDS_DATABASE_URL"]  # a host name that never resolves (RFC 2606)


def test_the_issuer_file_is_mounted_where_the_setting_points() -> None:
    path = Path(one("ConfigMap")["data"]["VCF_CDS_TRUSTED_ISSUERS"])
    container = server_container()
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == str(path.parent)]
    volumes = {v["name"]: v for v in one("Deployment")["spec"]["template"]["spec"]["volumes"]}
    secret_name = volumes[mount["name"]]["secret"]["secretName"]
    (secret,) = [r for r in resources() if r["kind"] == "Secret" and r["metadata"]["name"] == secret_name]
    assert path.name in secret["stringData"]
    assert "issuers" in json.loads(secret["stringData"][path.name])


def test_the_readme_explains_running_on_kubernetes() -> None:
    section = README.split("## Run on Kubernetes")[1].split("\n## ")[0]
    for topic in ("kubectl apply -k deploy/kubernetes", "CloudNativePG", "vcf-cds migrate", "VCF_CDS_MIGRATE"):
        assert topic in section, topic

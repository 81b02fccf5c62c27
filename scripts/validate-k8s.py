#!/usr/bin/env python3
"""validate-k8s.py - checks rendered Kubernetes manifests (scripts/check-deploy runs it with the
deploy-tools venv's Python).

Each document is validated against the Kubernetes JSON schemas that the PyPI package
`kubernetes-validate` bundles (strict: unknown fields are errors), and custom resources
(KEDA, RabbitMQ cluster operator) against the schemas in deploy/schemas/. A kind with neither
is an error, not a skip. Then a few rules of this project that no schema says: images pinned
by a tag other than `latest` with a pull policy, the workers' grace period covering the longest
job, KEDA counting unacknowledged messages.

Usage: validate-k8s.py --kubernetes-version 1.33.0 --schemas deploy/schemas FILE.yaml...
"""
import argparse
import json
import pathlib
import sys

import jsonschema
import kubernetes_validate
import yaml

# Longest job (~10 min): a worker must be given at least this long to drain on SIGTERM.
LONGEST_JOB_SECONDS = 600
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "Job"}


def crd_schemas(folder):
    """apiVersion/kind -> JSON schema, from files named <group>_<version>_<kind>.json."""
    schemas = {}
    for path in sorted(pathlib.Path(folder).glob("*.json")):
        schema = json.loads(path.read_text())
        props = schema["properties"]
        schemas[(props["apiVersion"]["const"], props["kind"]["const"])] = schema
    return schemas


def name_of(doc):
    return f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"


def pod_spec(doc):
    """The pod spec of a workload (every kind in WORKLOADS has spec.template.spec)."""
    return doc.get("spec", {}).get("template", {}).get("spec", {})


def project_rules(doc):
    """Rules of this project (see deploy/README.md), as a list of messages."""
    problems = []
    if doc["kind"] in WORKLOADS:
        spec = pod_spec(doc)
        for container in spec.get("initContainers", []) + spec.get("containers", []):
            image = container.get("image", "")
            tag = image.rsplit("/", 1)[-1].partition(":")[2] if "@" not in image else "digest"
            if not tag or tag == "latest":
                problems.append(f"container {container['name']}: image {image!r} is not pinned by tag")
            if "imagePullPolicy" not in container:
                problems.append(f"container {container['name']}: no imagePullPolicy")
        if doc["metadata"]["name"] == "clip-worker":
            grace = spec.get("terminationGracePeriodSeconds", 30)
            if grace < LONGEST_JOB_SECONDS:
                problems.append(f"terminationGracePeriodSeconds {grace} < longest job {LONGEST_JOB_SECONDS}")
    if doc["kind"] == "ScaledObject":
        for trigger in doc["spec"].get("triggers", []):
            meta = trigger.get("metadata", {})
            if trigger.get("type") == "rabbitmq":
                if meta.get("protocol") != "http" or meta.get("excludeUnacknowledged", "false") != "false":
                    problems.append(f"trigger {trigger.get('name')}: must count unacked messages (protocol http)")
            if trigger.get("type") == "aws-sqs-queue" and meta.get("scaleOnInFlight", "true") != "true":
                problems.append(f"trigger {trigger.get('name')}: must count in-flight messages")
    return problems


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--kubernetes-version", required=True)
    parser.add_argument("--schemas", required=True)
    parser.add_argument("files", nargs="+")
    args = parser.parse_args()
    crds = crd_schemas(args.schemas)
    failures = 0
    count = 0
    for file in args.files:
        with open(file) as f:
            docs = [d for d in yaml.safe_load_all(f) if d]
        for doc in docs:
            count += 1
            where = f"{file}: {name_of(doc)}"
            key = (doc.get("apiVersion"), doc.get("kind"))
            try:
                if key in crds:
                    jsonschema.validate(doc, crds[key])
                else:
                    kubernetes_validate.validate(doc, args.kubernetes_version, strict=True)
            except jsonschema.ValidationError as err:
                path = "/".join(str(p) for p in err.absolute_path)
                print(f"{where}: invalid at {path or '.'}: {err.message}", file=sys.stderr)
                failures += 1
                continue
            except kubernetes_validate.SchemaNotFoundError:
                print(f"{where}: no schema for {key[0]} {key[1]} (add one to {args.schemas})", file=sys.stderr)
                failures += 1
                continue
            for problem in project_rules(doc):
                print(f"{where}: {problem}", file=sys.stderr)
                failures += 1
    print(f"validate-k8s: {count} resources, {failures} problems (Kubernetes {args.kubernetes_version})", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

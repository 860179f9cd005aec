#!/usr/bin/env bash
# Validates deploy/k8s offline (deploy/test.sh runs this): every manifest
# against the Kubernetes OpenAPI schemas bundled with kubernetes-validate
# (PyPI; installed into a venv under the target dir), strict (unknown fields
# are errors), for the oldest and newest Kubernetes versions named below;
# and every kustomization's references (resources, patches, image names)
# resolve. There is no kustomize on Debian 12, so overlays are not rendered.
set -euo pipefail
cd "$(dirname "$0")/.."
TGT=${CARGO_TARGET_DIR:-$PWD/target}
VENV="$TGT/k8s-venv"
VERSIONS=(1.29.0 1.37.0)

if [ ! -x "$VENV/bin/kubernetes-validate" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet 'kubernetes-validate==1.37.0'
fi

mapfile -t manifests < <(find deploy/k8s -name '*.yaml' ! -name kustomization.yaml | sort)
for v in "${VERSIONS[@]}"; do
  "$VENV/bin/kubernetes-validate" --strict --quiet -k "$v" "${manifests[@]}"
done

# The validator must refuse what is wrong: a Deployment with a misspelt
# field and a replica count that is not a number.
bad=$(mktemp -d)
trap 'rm -rf "$bad"' EXIT
sed -e 's/^  replicas: 2$/  replicas: two/' -e 's/^      containers:$/      container:/' \
  deploy/k8s/base/broker-deployment.yaml > "$bad/broken.yaml"
if "$VENV/bin/kubernetes-validate" --strict --quiet -k "${VERSIONS[-1]}" "$bad/broken.yaml" >/dev/null 2>&1; then
  echo "k8s validation: a broken Deployment passed the validator" >&2
  exit 1
fi

"$VENV/bin/python" - "${manifests[@]}" <<'PY'
import os, sys, yaml

errors = []
images = set()
for path in sys.argv[1:]:
    for doc in yaml.safe_load_all(open(path)):
        spec = (doc or {}).get("spec", {}).get("template", {}).get("spec", {})
        for c in spec.get("containers", []) + spec.get("initContainers", []):
            images.add(c["image"])
for root, _, files in os.walk("deploy/k8s"):
    if "kustomization.yaml" not in files:
        continue
    k = yaml.safe_load(open(os.path.join(root, "kustomization.yaml")))
    refs = list(k.get("resources", [])) + [p["path"] for p in k.get("patches", [])]
    for ref in refs:
        if not os.path.exists(os.path.join(root, ref)):
            errors.append(f"{root}/kustomization.yaml: {ref} does not exist")
    for image in k.get("images", []):
        if image["name"] not in images:
            errors.append(f"{root}/kustomization.yaml: no container uses image {image['name']}")
for e in errors:
    print(e, file=sys.stderr)
sys.exit(1 if errors else 0)
PY
echo "k8s validation: ${#manifests[@]} manifests valid against Kubernetes ${VERSIONS[*]}; kustomizations resolve"

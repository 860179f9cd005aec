#!/usr/bin/env bash
# A real boot (issue #19): a Debian 12 guest with UEFI measured boot (OVMF)
# and IMA, a TPM 2.0 (tpm-crb backed by swtpm), the writ-attester package
# from this tree, and writ-broker on the host.
#
#   deploy/vm/vm-test.sh [OUT_DIR]       (root; default OUT_DIR: target/vm-test)
#
#   1. builds writ-broker and the writ-attester .deb (release), and a guest
#      image with mmdebstrap + mke2fs -d, cached under target/vm-cache
#      (rebuilt when the package or deploy/vm/guest changes)
#   2. reference boot: the guest runs no Writ unit, writes its event log,
#      IMA list and `writ-attester reference` draft to its output disk; the
#      policy is drafted from them with `writ-broker policy learn`
#   3. scenario A: the broker (TLS, SQLite) serves that policy; the guest
#      boots, writ-attester-enroll.service enrolls it, the daemon attests
#      with the kernel's own logs, writ-exec@hello runs the gated workload
#      scenario C (same boot): the guest then runs a program the policy does
#      not allow; the daemon's next attestation fails the host, naming the
#      file, and revokes its tokens
#   4. scenario B: the same host boots with a changed kernel command line
#      (B1) and with a changed initrd (B2); the broker fails it, naming what
#      changed, and writ-exec@hello is refused at boot
#
# Not part of .ci/run (it takes minutes to tens of minutes, depending on KVM).
# Networking is QEMU user mode with restrict=on: the guest reaches nothing
# but 10.0.2.100:8443, forwarded (guestfwd) to the broker on the host's
# loopback. Serial console logs: OUT_DIR/serial-*.log.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)

if [ "$(id -u)" -ne 0 ]; then
  echo "vm test: needs root (apt-get, mmdebstrap, chroot)" >&2
  exit 1
fi

TGT=${CARGO_TARGET_DIR:-$ROOT/target}
OUT=$(realpath -m "${1:-$TGT/vm-test}")
CACHE=$(realpath -m "${WRIT_VM_CACHE:-$TGT/vm-cache}")
BOOT_TIMEOUT=${WRIT_VM_BOOT_TIMEOUT:-1200}   # seconds per boot
MEM=${WRIT_VM_MEM:-1536}                      # MiB
SUITE=bookworm
MIRROR=${WRIT_VM_MIRROR:-http://deb.debian.org/debian}
GUEST_BROKER_IP=10.0.2.100
GUEST_BROKER_PORT=8443
CMDLINE="console=ttyS0 root=LABEL=writroot rw ima_hash=sha256 ima_template=ima-ng panic=-1"
CMDLINE_B="$CMDLINE writ.changed=1"

say() { printf '\n== vm test [%s]: %s\n' "$(date -u +%H:%M:%S)" "$*"; }
fail() { echo "vm test FAILED: $*" >&2; exit 1; }
START=$(date +%s)

rm -rf "$OUT"
mkdir -p "$OUT" "$CACHE"
FIGURES="$OUT/figures.txt"
: > "$FIGURES"
figure() { echo "$*" | tee -a "$FIGURES"; }

PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
  done
  rm -rf "$CACHE/rootfs.tmp"
}
trap cleanup EXIT

# --- tools -----------------------------------------------------------------
say "tools"
NEED=(qemu-system-x86 qemu-utils ovmf swtpm swtpm-tools mmdebstrap e2fsprogs socat openssl help2man python3)
missing=()
for p in "${NEED[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"
fi
OVMF_CODE=/usr/share/OVMF/OVMF_CODE_4M.fd
OVMF_VARS=/usr/share/OVMF/OVMF_VARS_4M.fd
[ -f "$OVMF_CODE" ] && [ -f "$OVMF_VARS" ] || fail "no OVMF in /usr/share/OVMF"

# --- binaries and the package ----------------------------------------------
say "release build, man page, writ-attester .deb"
t0=$(date +%s)
command -v cargo-deb >/dev/null || cargo install --locked cargo-deb
cargo build --release --locked -p broker -p attester
mkdir -p "$TGT/release/man"
help2man --no-info --version-string="$(awk -F'"' '/^version =/ {print $2; exit}' Cargo.toml)" \
  --name "Writ host attester and workload gate" "$TGT/release/writ-attester" | gzip -9n > "$TGT/release/man/writ-attester.1.gz"
mkdir -p "$OUT/debs"
cargo deb --no-build --locked -p attester -o "$OUT/debs/"
DEB=$(ls "$OUT"/debs/writ-attester_*.deb)
BROKER_BIN="$TGT/release/writ-broker"
figure "build (release, incremental as found) + package: $(( $(date +%s) - t0 )) s"

# --- guest image -------------------------------------------------------------
# Stage 1 (cached by its package list): mmdebstrap of bookworm with a kernel,
# systemd and the package's dependencies. Stage 2 (cached by the .deb and
# deploy/vm/guest): the package and the test units installed, an ext4 image.
# The package's run-time libraries are in stage 1; dpkg -i in stage 2 says
# so if the package ever needs one more.
BASE_PKGS="systemd,systemd-sysv,udev,dbus,linux-image-amd64,initramfs-tools,kmod,procps,iproute2,ca-certificates,tpm-udev"
BASE_PKGS="$BASE_PKGS,init-system-helpers,libssl3,libtss2-esys-3.0.2-0,libtss2-tctildr0,libtss2-mu0,libtss2-sys1,libtss2-tcti-device0"
base_key=$(echo "$SUITE $BASE_PKGS v1" | sha256sum | cut -c1-16)
BASE_TAR="$CACHE/base-$base_key.tar"
image_key=$( (echo "$base_key"; sha256sum "$DEB" | cut -d' ' -f1; cd deploy/vm/guest && sha256sum ./*) | sha256sum | cut -c1-16)
IMAGE_DIR="$CACHE/image-$image_key"
if [ ! -f "$BASE_TAR" ]; then
  say "image stage 1: mmdebstrap $SUITE ($BASE_PKGS)"
  t0=$(date +%s)
  timeout 1800 mmdebstrap --variant=minbase --format=tar --include="$BASE_PKGS" \
    --customize-hook='echo "do_symlinks = no" > "$1/etc/kernel-img.conf"' \
    "$SUITE" "$BASE_TAR.tmp" "$MIRROR"
  mv "$BASE_TAR.tmp" "$BASE_TAR"
  figure "image stage 1 (mmdebstrap, $(du -m "$BASE_TAR" | cut -f1) MB tar): $(( $(date +%s) - t0 )) s"
else
  figure "image stage 1: cached ($BASE_TAR)"
fi
if [ ! -f "$IMAGE_DIR/root.img" ]; then
  say "image stage 2: writ-attester, test units, ext4 image"
  t0=$(date +%s)
  R="$CACHE/rootfs.tmp"
  rm -rf "$R" "$IMAGE_DIR.tmp"
  mkdir -p "$R" "$IMAGE_DIR.tmp"
  tar -xf "$BASE_TAR" -C "$R"
  cp "$DEB" "$R/tmp/writ-attester.deb"
  chroot "$R" dpkg -i /tmp/writ-attester.deb
  rm "$R/tmp/writ-attester.deb"
  G=deploy/vm/guest
  install -D -m 0644 "$G/ima-policy" "$R/etc/ima/ima-policy"
  install -D -m 0644 "$G/20-dhcp.network" "$R/etc/systemd/network/20-dhcp.network"
  install -D -m 0755 "$G/writ-hello" "$R/usr/local/bin/writ-hello"
  install -D -m 0755 "$G/writ-vm-setup" "$R/usr/local/sbin/writ-vm-setup"
  install -D -m 0755 "$G/writ-vm-report" "$R/usr/local/sbin/writ-vm-report"
  install -D -m 0644 "$G/writ-vm-setup.service" "$R/etc/systemd/system/writ-vm-setup.service"
  install -D -m 0644 "$G/writ-vm-report.service" "$R/etc/systemd/system/writ-vm-report.service"
  # The one line an administrator adds for a gated workload.
  mkdir -p "$R/etc/systemd/system/writ-exec@hello.service.d"
  printf '[Service]\nEnvironment="WRIT_EXEC=/usr/local/bin/writ-hello"\n' \
    > "$R/etc/systemd/system/writ-exec@hello.service.d/exec.conf"
  echo writ-vm > "$R/etc/hostname"
  echo "LABEL=writroot / ext4 rw 0 1" > "$R/etc/fstab"
  chroot "$R" systemctl enable systemd-networkd.service systemd-networkd-wait-online.service \
    writ-vm-setup.service writ-vm-report.service writ-exec@hello.service
  # No login prompt needed; keep the console for the kernel and the units.
  chroot "$R" systemctl mask serial-getty@ttyS0.service getty@tty1.service
  cp "$R"/boot/vmlinuz-* "$IMAGE_DIR.tmp/vmlinuz"
  cp "$R"/boot/initrd.img-* "$IMAGE_DIR.tmp/initrd.img"
  cp "$R"/boot/config-* "$IMAGE_DIR.tmp/kernel-config"
  mke2fs -q -t ext4 -L writroot -d "$R" "$IMAGE_DIR.tmp/root.img" 2G
  rm -rf "$R"
  rm -rf "$IMAGE_DIR"
  mv "$IMAGE_DIR.tmp" "$IMAGE_DIR"
  figure "image stage 2 (package, units, mke2fs -d 2 GiB): $(( $(date +%s) - t0 )) s"
else
  figure "image stage 2: cached ($IMAGE_DIR)"
fi
grep -E '^CONFIG_(IMA|TCG_CRB|TCG_TPM|IMA_DEFAULT_HASH_SHA256|IMA_NG_TEMPLATE|EFI_STUB)=' "$IMAGE_DIR/kernel-config" | tee "$OUT/kernel-config.txt"

# --- accelerator -------------------------------------------------------------
# /dev/kvm may exist without working (KVM_CREATE_VM succeeds, the vCPU
# cannot run): run OVMF under KVM for 20 s and require its boot manager's
# first line on the serial console; otherwise TCG. -cpu host without
# arch-capabilities: KVM refuses to set MSR 0x10a on some hosts.
ACCEL=tcg
CPU=max
if [ -e /dev/kvm ]; then
  cp "$OVMF_VARS" "$OUT/kvm-probe-vars.fd"
  timeout 20 qemu-system-x86_64 -accel kvm -machine q35 -cpu host,-arch-capabilities -m 256 \
    -nodefaults -display none -serial file:"$OUT/kvm-probe-serial.log" \
    -drive if=pflash,format=raw,unit=0,file="$OVMF_CODE",readonly=on \
    -drive if=pflash,format=raw,unit=1,file="$OUT/kvm-probe-vars.fd" >"$OUT/kvm-probe.log" 2>&1 || true
  if grep -q BdsDxe "$OUT/kvm-probe-serial.log" 2>/dev/null; then
    ACCEL=kvm
    CPU=host,-arch-capabilities
  fi
fi
figure "accelerator: $ACCEL (KVM probe: $(head -3 "$OUT/kvm-probe.log" 2>/dev/null | tr '\n' ' ' | cut -c1-160))"

# --- the TPM: swtpm with its own local CA (the EK's manufacturer) ----------
say "swtpm state and its local CA"
TPM="$OUT/tpm"
mkdir -p "$TPM/xdg" "$TPM/state"
XDG_CONFIG_HOME="$TPM/xdg" swtpm_setup --create-config-files root >/dev/null
XDG_CONFIG_HOME="$TPM/xdg" swtpm_setup --tpm2 --tpmstate "$TPM/state" --pcr-banks sha256 \
  --create-ek-cert --create-platform-cert --overwrite >/dev/null

# --- the broker's TLS: a test CA, a certificate for the forwarded address -----
say "broker TLS (a test CA; the certificate names $GUEST_BROKER_IP and 127.0.0.1)"
B="$OUT/broker"
mkdir -p "$B/tls" "$B/ek-roots"
(
  cd "$B/tls"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
    -keyout ca.key -out ca.crt -subj "/CN=Writ VM test broker CA" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout broker.key -out broker.csr -subj "/CN=writ-broker.vm" 2>/dev/null
  openssl x509 -req -in broker.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 30 -out broker.crt \
    -extfile <(printf 'subjectAltName=IP:%s,IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\nextendedKeyUsage=serverAuth\n' "$GUEST_BROKER_IP") 2>/dev/null
)
cp "$TPM/xdg/var/lib/swtpm-localca/swtpm-localca-rootca-cert.pem" "$TPM/xdg/var/lib/swtpm-localca/issuercert.pem" "$B/ek-roots/"

free_port() {
  for p in $(shuf -i 20000-60000 -n 200); do
    if ! (exec 3<>/dev/tcp/127.0.0.1/"$p") 2>/dev/null; then echo "$p"; return 0; fi
  done
  return 1
}
BROKER_PORT=$(free_port)

# --- one boot ------------------------------------------------------------------
# boot NAME MODE CMDLINE DISK: boots the guest once (bounded by BOOT_TIMEOUT);
# the serial console goes to OUT/serial-NAME.log, the guest's results to
# OUT/NAME/. DISK is the qcow2 overlay the guest writes to.
QEMU_PID=""
boot_start() {
  local name=$1 mode=$2 cmdline=$3 disk=$4 initrd=${5:-$IMAGE_DIR/initrd.img}
  local d="$OUT/$name"
  mkdir -p "$d/in"
  echo "$mode" > "$d/in/mode"
  if [ "$mode" != reference ]; then
    cp "$B/tls/ca.crt" "$d/in/broker-ca.pem"
    cat > "$d/in/attester.env" <<ENV
WRIT_BROKER=https://$GUEST_BROKER_IP:$GUEST_BROKER_PORT
WRIT_BROKER_CA=/etc/writ/broker-ca.pem
ENV
    # The package's attester.toml with a short interval, so scenario C's
    # re-attestation comes within the boot.
    sed 's/^interval_secs = .*/interval_secs = 20/' deploy/debian/attester.toml > "$d/in/attester.toml"
  fi
  tar -cf "$d/in.tar" -C "$d/in" .
  truncate -s 16M "$d/out.img"
  cp "$OVMF_VARS" "$d/OVMF_VARS.fd"
  # swtpm: the same TPM state every boot (the same host), fresh PCRs.
  rm -f "$TPM/swtpm.sock" "$TPM/swtpm.pid"
  swtpm socket --tpm2 --tpmstate dir="$TPM/state" --ctrl type=unixio,path="$TPM/swtpm.sock" \
    --pid file="$TPM/swtpm.pid" --log file="$d/swtpm.log",level=1 --terminate --daemon
  for _ in $(seq 50); do [ -S "$TPM/swtpm.sock" ] && break; sleep 0.1; done
  [ -S "$TPM/swtpm.sock" ] || fail "swtpm did not start"
  PIDS+=("$(cat "$TPM/swtpm.pid")")
  timeout "$BOOT_TIMEOUT" qemu-system-x86_64 -accel "$ACCEL" -machine q35 -cpu "$CPU" -smp 2 -m "$MEM" \
    -nodefaults -display none -no-reboot -monitor none \
    -serial "file:$OUT/serial-$name.log" \
    -drive if=pflash,format=raw,unit=0,file="$OVMF_CODE",readonly=on \
    -drive if=pflash,format=raw,unit=1,file="$d/OVMF_VARS.fd" \
    -kernel "$IMAGE_DIR/vmlinuz" -initrd "$initrd" -append "$cmdline" \
    -drive if=none,id=root,file="$disk",format=qcow2 -device virtio-blk-pci,drive=root,serial=writ-root \
    -drive if=none,id=din,file="$d/in.tar",format=raw,readonly=on -device virtio-blk-pci,drive=din,serial=writ-in \
    -drive if=none,id=dout,file="$d/out.img",format=raw -device virtio-blk-pci,drive=dout,serial=writ-out \
    -netdev "user,id=net0,restrict=on,guestfwd=tcp:$GUEST_BROKER_IP:$GUEST_BROKER_PORT-cmd:socat - TCP:127.0.0.1:$BROKER_PORT" \
    -device virtio-net-pci,netdev=net0 \
    -chardev socket,id=chrtpm,path="$TPM/swtpm.sock" -tpmdev emulator,id=tpm0,chardev=chrtpm \
    -device tpm-crb,tpmdev=tpm0 \
    > "$d/qemu.log" 2>&1 &
  QEMU_PID=$!
  PIDS+=("$QEMU_PID")
  BOOT_T0=$(date +%s.%N)
}
# boot_wait NAME: until the guest powers off; its results extracted
boot_wait() {
  local name=$1 rc=0
  wait "$QEMU_PID" || rc=$?
  [ "$rc" = 0 ] || { tail -5 "$OUT/$name/qemu.log" >&2; fail "boot $name: qemu exit $rc (124: timeout after $BOOT_TIMEOUT s); serial log $OUT/serial-$name.log"; }
  mkdir -p "$OUT/$name/out"
  tar -xf "$OUT/$name/out.img" -C "$OUT/$name/out" 2>/dev/null || fail "boot $name: no results on the output disk (serial log $OUT/serial-$name.log)"
  figure "boot $name: power-on to power-off $(elapsed) s"
}
elapsed() { awk -v a="$(date +%s.%N)" -v b="$BOOT_T0" 'BEGIN { printf "%.1f", a - b }'; }
# serial_wait NAME PATTERN SECS: until the console shows PATTERN
serial_wait() {
  local f="$OUT/serial-$1.log"
  for _ in $(seq $(( $3 * 2 ))); do
    grep -q -- "$2" "$f" 2>/dev/null && return 0
    kill -0 "$QEMU_PID" 2>/dev/null || { grep -q -- "$2" "$f" 2>/dev/null && return 0; return 1; }
    sleep 0.5
  done
  return 1
}

# --- reference boot ------------------------------------------------------------
say "reference boot ($ACCEL): no Writ unit runs; logs and a draft come back"
mkdir -p "$OUT/reference"
qemu-img create -q -f qcow2 -b "$IMAGE_DIR/root.img" -F raw "$OUT/reference/disk.qcow2"
boot_start reference reference "$CMDLINE" "$OUT/reference/disk.qcow2"
serial_wait reference "WRIT-VM: reference done" "$BOOT_TIMEOUT" || fail "reference boot did not finish (serial log $OUT/serial-reference.log)"
boot_wait reference
REF="$OUT/reference/out"
[ -s "$REF/eventlog.bin" ] || fail "the guest has no event log (is the TPM seen by the kernel? serial log)"
[ -s "$REF/ima.txt" ] || fail "the guest has no IMA list"
figure "reference boot: event log $(wc -c < "$REF/eventlog.bin") bytes, IMA list $(wc -l < "$REF/ima.txt") entries / $(wc -c < "$REF/ima.txt") bytes"
"$BROKER_BIN" evidence eventlog "$REF/eventlog.bin" > "$OUT/reference/eventlog.json" || true

say "policy: writ-broker policy learn from the guest's logs + the workload from writ-attester reference"
# The draft's empty workload list gives way to the reference's entry.
"$BROKER_BIN" policy learn --eventlog "$REF/eventlog.bin" --ima "$REF/ima.txt" --id vm-reference \
  | sed '/^workloads = \[\]$/d' > "$OUT/policy.toml"
sed -n '/^\[\[workloads\]\]/,$p' "$REF/reference.toml" >> "$OUT/policy.toml"
# `writ-attester run` (writ-exec@) executes the bytes it hashed from a
# sealed memory file named "writ-workload": IMA records that execution as
# path "memfd:writ-workload" with the program's digest. The reference boot
# ran no gated workload, so the IMA allowlist gets that path with the
# workloads' own digests (docs/policy.md, "IMA and gated workloads").
python3 - "$OUT/policy.toml" <<'PY'
import re, sys
p = sys.argv[1]
s = open(p).read()
digests = re.findall(r'^digests = \[(.*)\]$', s, re.M)
allowed = sorted({d.strip().strip('"') for line in digests for d in line.split(",")})
entry = '"memfd:writ-workload" = [%s]\n' % ", ".join('"sha256:%s"' % d for d in allowed)
assert "[groups.ima.allow]\n" in s
s = s.replace("[groups.ima.allow]\n", "[groups.ima.allow]\n" + entry, 1)
open(p, "w").write(s)
PY
"$BROKER_BIN" policy check "$OUT/policy.toml"

# --- the broker ------------------------------------------------------------------
say "writ-broker on 127.0.0.1:$BROKER_PORT (TLS, SQLite), reached by the guest at $GUEST_BROKER_IP:$GUEST_BROKER_PORT"
cat > "$B/broker.toml" <<TOML
[server]
listen = "127.0.0.1:$BROKER_PORT"
tls_cert = "$B/tls/broker.crt"
tls_key = "$B/tls/broker.key"
[storage]
url = "sqlite://$B/writ.db"
[keys]
dir = "$B/keys"
[policy]
file = "$OUT/policy.toml"
[trust]
bundled_manufacturers = false
ek_roots = ["$B/ek-roots"]
[status]
public_base_url = "https://$GUEST_BROKER_IP:$GUEST_BROKER_PORT"
TOML
"$BROKER_BIN" operator-token --name vm-test > "$B/operator-entry" 2> "$B/operator-token"
OPERATOR_TOKEN=$(tail -1 "$B/operator-token")
cat "$B/operator-entry" >> "$B/broker.toml"
WRIT_LOG=info "$BROKER_BIN" serve --config "$B/broker.toml" 2> "$B/broker.log" &
PIDS+=($!)
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/"$BROKER_PORT") 2>/dev/null && break; sleep 0.1; done
export WRIT_BROKER="https://127.0.0.1:$BROKER_PORT" WRIT_OPERATOR_TOKEN=$OPERATOR_TOKEN
CLI=("$BROKER_BIN")
CA=(--ca-cert "$B/tls/ca.crt")
"${CLI[@]}" status "${CA[@]}" >/dev/null || fail "broker not answering: $(tail -5 "$B/broker.log")"

host_json() { "${CLI[@]}" hosts list "${CA[@]}" --json; }
first_host() { host_json | python3 -c 'import json,sys; d=json.load(sys.stdin); h=d if isinstance(d,list) else d.get("hosts",[]); print(h[0]["id"] if h else "")'; }

# --- scenario A (and C in the same boot) -------------------------------------------
say "scenario A: boot, enrollment at boot, attestation with the real logs, gated workload"
mkdir -p "$OUT/a"
qemu-img create -q -f qcow2 -b "$IMAGE_DIR/root.img" -F raw "$OUT/a/disk.qcow2"
boot_start a a "$CMDLINE" "$OUT/a/disk.qcow2"
HOST=""
for _ in $(seq "$BOOT_TIMEOUT"); do
  HOST=$(first_host 2>/dev/null || true)
  [ -n "$HOST" ] && break
  kill -0 "$QEMU_PID" 2>/dev/null || break
  sleep 1
done
[ -n "$HOST" ] || fail "scenario A: the guest did not enroll (serial log $OUT/serial-a.log)"
figure "scenario A: power-on to enrolled $(elapsed) s"
serial_wait a "WRIT-VM: unit writ-exec@hello" "$BOOT_TIMEOUT" || fail "scenario A: no workload result (serial log)"
figure "scenario A: power-on to the workload's result $(elapsed) s"
"${CLI[@]}" hosts show "$HOST" "${CA[@]}" --json > "$OUT/a/host-after-a.json"
"${CLI[@]}" hosts show "$HOST" "${CA[@]}" | tee "$OUT/a/host-after-a.txt"
grep -q "hello from a gated workload" "$OUT/serial-a.log" || fail "scenario A: the gated workload did not run"
python3 - "$OUT/a/host-after-a.json" <<'PY' || fail "scenario A: host not trusted"
import json, sys
h = json.load(open(sys.argv[1]))
print("host status:", h.get("status"))
sys.exit(0 if h.get("status") == "trusted" else 1)
PY
serial_wait a "WRIT-VM: writ-attester attest: exit" 300 || fail "scenario A: the guest's attest did not finish"
grep -q "WRIT-VM: writ-attester attest: exit 0" "$OUT/serial-a.log" || fail "scenario A: the guest's own attestation failed: $(grep -a 'WRIT-VM: \[attest\]' "$OUT/serial-a.log" | tail -3)"
echo "scenario A: PASSED"

say "scenario C: the guest runs a program the policy does not allow; the next re-attestation fails the host"
serial_wait a "WRIT-VM: intruder ran" 300 || fail "scenario C: the intruder did not run"
C_T0=$(date +%s)
status=""
for _ in $(seq 120); do
  "${CLI[@]}" hosts show "$HOST" "${CA[@]}" --json > "$OUT/a/host-after-c.json" 2>/dev/null || true
  status=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("status",""))' "$OUT/a/host-after-c.json" 2>/dev/null || true)
  [ "$status" = failed ] && break
  sleep 1
done
[ "$status" = failed ] || fail "scenario C: host status $status, not failed"
figure "scenario C: host failed $(( $(date +%s) - C_T0 )) s after the intruder ran"
"${CLI[@]}" hosts show "$HOST" "${CA[@]}" | tee "$OUT/a/host-after-c.txt"
grep -q "/var/lib/writ-vm/intruder" "$OUT/a/host-after-c.json" || fail "scenario C: the failure does not name the file"
"${CLI[@]}" tokens list --host "$HOST" "${CA[@]}" | tee "$OUT/a/tokens-after-c.txt"
"${CLI[@]}" tokens list --host "$HOST" --state active "${CA[@]}" --json > "$OUT/a/tokens-active-after-c.json"
python3 -c 'import json,sys; t=json.load(open(sys.argv[1]))["tokens"]; sys.exit(0 if not t else 1)' "$OUT/a/tokens-active-after-c.json" \
  || fail "scenario C: the host still holds active tokens"
grep -q revoked "$OUT/a/tokens-after-c.txt" || fail "scenario C: no revoked token listed"
boot_wait a
echo "scenario C: PASSED"
# What the broker appraised in A: the guest's own logs of that boot, as the
# broker's replay sees them, and the IMA entries it accepted (its cursor).
"$BROKER_BIN" evidence eventlog "$OUT/a/out/eventlog.bin" > "$OUT/a/eventlog.json" || true
python3 - "$OUT/a/eventlog.json" "$B/writ.db" "$HOST" <<'PY' | tee "$OUT/a/appraised.txt"
import json, sqlite3, sys
d = json.load(open(sys.argv[1]))
b = d["boot_state"]
print("event log (OVMF + EFI stub):", d["events"], "events;",
      len(b["firmware_blobs"]), "firmware blobs,",
      len(b["boot_variables"]), "boot variables, boot apps",
      [a.get("device_path") for a in b["boot_applications"]],
      ", tagged", [t["description"] for t in b["tagged_events"]])
n = sqlite3.connect(sys.argv[2]).execute("select * from ima_cursors where host_id = ?", (sys.argv[3],)).fetchone()
print("IMA entries the broker accepted (ima_cursors) before C's failure:", n[1] if n else None)
PY
ms=$(grep -a -o 'writ-attester attest: exit 0, [0-9]* ms' "$OUT/serial-a.log" | grep -o '[0-9]* ms' || true)
figure "scenario A: writ-attester attest in the guest (TCG: quote, both logs, TLS round trip) $ms"
figure "scenario A: guest logs at the end of the boot: event log $(wc -c < "$OUT/a/out/eventlog.bin") bytes, IMA list $(wc -l < "$OUT/a/out/ima.txt") entries / $(wc -c < "$OUT/a/out/ima.txt") bytes"

# --- scenario B --------------------------------------------------------------------
# The same host (its disk from A, still enrolled) boots with a change the
# firmware or the kernel measures: B1 one word added to the kernel command
# line (the EFI stub measures the load options into PCR 9, digest only),
# B2 the initrd with 512 zero bytes appended (the kernel ignores them; the
# stub measures the initrd into PCR 9, the policy allows one digest).
scenario_b() { # scenario_b NAME WHAT CMDLINE INITRD RULE
  local name=$1 what=$2 cmdline=$3 initrd=$4 rule=$5
  say "scenario $name: the same host boots with a changed $what"
  mkdir -p "$OUT/$name"
  qemu-img create -q -f qcow2 -b "$OUT/a/disk.qcow2" -F qcow2 "$OUT/$name/disk.qcow2"
  boot_start "$name" b "$cmdline" "$OUT/$name/disk.qcow2" "$initrd"
  serial_wait "$name" "WRIT-VM: b done" "$BOOT_TIMEOUT" || fail "scenario $name: the boot did not finish (serial log)"
  boot_wait "$name"
  "${CLI[@]}" hosts show "$HOST" "${CA[@]}" --json > "$OUT/$name/host.json"
  "${CLI[@]}" hosts show "$HOST" "${CA[@]}" | tee "$OUT/$name/host.txt"
  python3 -c 'import json,sys; sys.exit(0 if json.load(open(sys.argv[1]))["status"] == "failed" else 1)' "$OUT/$name/host.json" \
    || fail "scenario $name: the host is not failed"
  grep -q "\"rule\": \"$rule\"" "$OUT/$name/host.json" || fail "scenario $name: no $rule failure"
  ! grep -q "hello from a gated workload" "$OUT/serial-$name.log" || fail "scenario $name: the workload ran"
  grep -a -q "unit writ-exec@hello: .*ExecMainStatus=3" "$OUT/serial-$name.log" || fail "scenario $name: writ-exec@hello did not exit 3 (refused)"
  grep -a "WRIT-VM: \[writ-exec@hello\] writ-attester: refused" "$OUT/serial-$name.log" | sed 's/.*WRIT-VM: //' || true
  # Which event of the guest's own log differs from the reference boot's.
  "$BROKER_BIN" evidence eventlog "$OUT/$name/out/eventlog.bin" > "$OUT/$name/eventlog.json" || true
  python3 - "$OUT/reference/eventlog.json" "$OUT/$name/eventlog.json" <<'PY' | tee "$OUT/$name/changed-events.txt"
import json, sys
ref, new = (json.load(open(p))["boot_state"]["tagged_events"] for p in sys.argv[1:3])
for r, n in zip(ref, new):
    if r["digest"] != n["digest"]:
        print("changed: event %d, PCR %d, EV_EVENT_TAG 0x%X %r: %s -> %s" % (
            n["event_index"], n["pcr"], n["tag_id"], n["description"], r["digest"]["value"], n["digest"]["value"]))
PY
  echo "scenario $name: PASSED"
}
scenario_b b1 "kernel command line" "$CMDLINE_B" "$IMAGE_DIR/initrd.img" pcr_not_allowed
cp "$IMAGE_DIR/initrd.img" "$OUT/initrd-b2.img"
head -c 512 /dev/zero >> "$OUT/initrd-b2.img"
scenario_b b2 initrd "$CMDLINE" "$OUT/initrd-b2.img" boot_digest_not_allowed

say "all scenarios passed in $(( $(date +%s) - START )) s ($ACCEL); figures in $FIGURES"
cat "$FIGURES"

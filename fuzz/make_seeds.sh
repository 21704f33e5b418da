#!/usr/bin/env bash
# Seeds for the fuzz targets: hand-made fixtures and small images from qemu-img, vdconv,
# the chain generator, tar, hivexsh and cpio: every size class and kind each parser reads.
set -euo pipefail
cd "$(dirname "$0")"
root=..
vd="$root/target/release/vdconv"
[ -x "$vd" ] || (cd "$root" && cargo build --release -q)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
targets=(descriptor sparse stream vhd vhdx contract cowd sesparse vhdx_log tar ovf manifest hive initramfs vhd_locator vhdx_locator)
for t in "${targets[@]}"; do mkdir -p "corpus/$t"; done

# Raw disks of two size classes: 192 KiB and 3 MiB with scattered data.
head -c 196608 /dev/urandom > "$tmp/r.raw"
printf 'hello' | dd of="$tmp/r.raw" bs=1 seek=70000 conv=notrunc status=none
truncate -s 3M "$tmp/big.raw"
for at in 0 700000 2000000 3145000; do head -c 4096 /dev/urandom | dd of="$tmp/big.raw" bs=1 seek=$at conv=notrunc status=none; done
for raw in r big; do
  for sub in monolithicSparse streamOptimized twoGbMaxExtentSparse monolithicFlat; do
    qemu-img convert -f raw -O vmdk -o subformat=$sub "$tmp/$raw.raw" "$tmp/$raw-$sub.vmdk"
  done
done
cp "$tmp"/*-monolithicSparse.vmdk "$tmp"/*-twoGbMaxExtentSparse-s001.vmdk corpus/sparse/
cp "$root"/fixtures/handmade/corrupt/*.vmdk "$root"/fixtures/handmade/split-sparse/disk-s00*.vmdk corpus/sparse/
cp "$tmp"/*-streamOptimized.vmdk "$root/fixtures/handmade/stream-footer-padded.vmdk" corpus/stream/
find "$root/fixtures/handmade" -name '*.vmdk' -size -4k -exec cp {} corpus/descriptor/ \;
cp "$tmp/r-twoGbMaxExtentSparse.vmdk" "$tmp/r-monolithicFlat.vmdk" corpus/descriptor/
for raw in r big; do
  "$vd" convert -q "$tmp/$raw-monolithicSparse.vmdk" "corpus/vhd/$raw-dynamic.vhd" --block-size 512K
  "$vd" convert -q --type fixed "$tmp/$raw-monolithicSparse.vmdk" "corpus/vhd/$raw-fixed.vhd"
  qemu-img convert -f raw -O vpc "$tmp/$raw.raw" "corpus/vhd/$raw-qemu.vhd"
  "$vd" convert -q "$tmp/$raw-monolithicSparse.vmdk" "corpus/vhdx/$raw-dynamic.vhdx" --block-size 1M
  qemu-img convert -f raw -O vhdx -o block_size=1M "$tmp/$raw.raw" "corpus/vhdx/$raw-qemu.vhdx"
done
qemu-img create -q -f vmdk -b "$tmp/r-monolithicSparse.vmdk" -F vmdk "$tmp/delta.vmdk"
qemu-io -c "write -P 7 4096 8192" "$tmp/delta.vmdk" >/dev/null
cp "$tmp/delta.vmdk" corpus/sparse/
# The Disk contract: 32 bytes choosing ranges, then an image of each kind.
for f in corpus/vhd/r-dynamic.vhd corpus/vhd/r-fixed.vhd corpus/vhdx/r-dynamic.vhdx corpus/sparse/r-monolithicSparse.vmdk corpus/stream/r-streamOptimized.vmdk; do
  { head -c 32 /dev/urandom; cat "$f"; } > "corpus/contract/$(basename "$f")"
done
# VHDX with a log to replay: qemu leaves the log empty, so seed with its images.
cp corpus/vhdx/*.vhdx corpus/vhdx_log/
# COWD and seSparse chains (no open tool writes them).
python3 "$root/fixtures/make_deltas.py" "$tmp/chain" >/dev/null
cp "$tmp"/chain/*-delta.vmdk corpus/cowd/ 2>/dev/null || true
cp "$tmp"/chain/*sesparse*.vmdk corpus/sesparse/ 2>/dev/null || true
find "$tmp/chain" -name '*.vmdk' -size +4k | while read -r f; do
  case "$(head -c 4 "$f")" in COWD) cp "$f" corpus/cowd/ ;; esac
done
# Differencing children written by --keep-chain: whole files for the image targets, and
# their locators for the parser targets (a VHD header with its locator data after it; the
# VHDX parent locator item).
"$vd" convert -q --keep-chain "$tmp/delta.vmdk" "$tmp/kept.vhdx"
"$vd" convert -q --keep-chain "$tmp/delta.vmdk" "$tmp/kept.vhd"
cp "$tmp/delta.avhdx" corpus/vhdx/
cp "$tmp/delta.vhd" corpus/vhd/delta-child.vhd
python3 - "$tmp/delta.vhd" corpus/vhd_locator/child <<'PY'
import struct, sys
d = open(sys.argv[1], 'rb').read()
header = d[512:1536]
# Point the locators at the data copied after the header.
out = bytearray(header)
data = bytearray()
for i in range(8):
    e = 576 + 24 * i
    length, offset = struct.unpack('>I', out[e + 8:e + 12])[0], struct.unpack('>Q', out[e + 16:e + 24])[0]
    if length:
        out[e + 16:e + 24] = struct.pack('>Q', 1024 + len(data))
        data += d[offset:offset + length]
open(sys.argv[2], 'wb').write(bytes(out) + bytes(data))
PY
python3 - "$tmp/delta.avhdx" corpus/vhdx_locator/child <<'PY'
import struct, sys
d = open(sys.argv[1], 'rb').read()
meta = 2 << 20
count = struct.unpack('<H', d[meta + 10:meta + 12])[0]
locator = bytes.fromhex('2d5fd3a80bb34d45abf7d3d84834ab0c')
for i in range(count):
    e = meta + 32 + 32 * i
    if d[e:e + 16] == locator:
        off, length = struct.unpack('<II', d[e + 16:e + 24])
        open(sys.argv[2], 'wb').write(d[meta + off:meta + off + length])
PY
# An OVA the way ovftool lays it out, and its parts.
cp "$tmp/r-streamOptimized.vmdk" "$tmp/vm-disk1.vmdk"
cat > "$tmp/vm.ovf" <<'OVF'
<?xml version="1.0" encoding="UTF-8"?>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1" xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData" xmlns:vssd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData" xmlns:vmw="http://www.vmware.com/schema/ovf">
  <References><File ovf:href="vm-disk1.vmdk" ovf:id="file1" ovf:size="1"/></References>
  <DiskSection><Info>Disks</Info><Disk ovf:capacity="196608" ovf:diskId="vmdisk1" ovf:fileRef="file1" ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"/></DiskSection>
  <VirtualSystem ovf:id="vm"><Info>A VM</Info><Name>vm</Name>
    <OperatingSystemSection ovf:id="101" vmw:osType="ubuntu64Guest"><Info>OS</Info></OperatingSystemSection>
    <VirtualHardwareSection><Info>HW</Info>
      <Item><rasd:InstanceID>3</rasd:InstanceID><rasd:ResourceSubType>lsilogic</rasd:ResourceSubType><rasd:ResourceType>6</rasd:ResourceType></Item>
      <Item><rasd:AddressOnParent>0</rasd:AddressOnParent><rasd:HostResource>ovf:/disk/vmdisk1</rasd:HostResource><rasd:InstanceID>4</rasd:InstanceID><rasd:Parent>3</rasd:Parent><rasd:ResourceType>17</rasd:ResourceType></Item>
      <vmw:Config ovf:required="false" vmw:key="firmware" vmw:value="efi"/>
    </VirtualHardwareSection>
  </VirtualSystem>
</Envelope>
OVF
(cd "$tmp" && printf 'SHA256(vm.ovf)= %s\nSHA1(vm-disk1.vmdk)= %s\n' "$(sha256sum vm.ovf | cut -d' ' -f1)" "$(sha1sum vm-disk1.vmdk | cut -d' ' -f1)" > vm.mf)
(cd "$tmp" && tar --format=ustar -cf vm.ova vm.ovf vm.mf vm-disk1.vmdk && tar --format=pax -cf vm-pax.ova vm.ovf vm.mf)
cp "$tmp/vm.ova" "$tmp/vm-pax.ova" corpus/tar/
cp "$tmp/vm.ovf" corpus/ovf/
cp "$tmp/vm.mf" corpus/manifest/
# A registry hive: an empty one written here (hivexsh cannot create one), then keys.
python3 - "$tmp/empty.hiv" <<'PY'
import struct, sys
def cell(d):
    n = (4 + len(d) + 7) // 8 * 8
    return struct.pack('<i', -n) + d + b'\0' * (n - 4 - len(d))
name = b'ROOT'
nk_size = (4 + 76 + len(name) + 7) // 8 * 8
sk_off = 0x20 + nk_size
nk = b'nk' + struct.pack('<H', 0x2c) + b'\0' * 8 + struct.pack('<15I', 0, 0xffffffff, 0, 0, 0xffffffff, 0xffffffff, 0, 0xffffffff, sk_off, 0xffffffff, 0, 0, 0, 0, 0) + struct.pack('<HH', len(name), 0) + name
sd = bytes([1, 0, 0, 0x80] + [0] * 16)
sk = b'sk\0\0' + struct.pack('<4I', sk_off, sk_off, 1, len(sd)) + sd
body = cell(nk) + cell(sk)
body += struct.pack('<i', 4096 - 32 - len(body)) + b'\0' * (4096 - 32 - len(body) - 4)
hdr = bytearray(4096)
hdr[0:4] = b'regf'
for i, v in enumerate([1, 1, 0, 0, 1, 5, 0, 1, 0x20, 4096], start=1):
    hdr[i*4:i*4+4] = struct.pack('<I', v)
hdr[44:48] = struct.pack('<I', 1)
x = 0
for i in range(127):
    x ^= struct.unpack('<I', hdr[i*4:i*4+4])[0]
hdr[508:512] = struct.pack('<I', {0: 1, 0xffffffff: 0xfffffffe}.get(x, x))
open(sys.argv[1], 'wb').write(bytes(hdr) + b'hbin' + struct.pack('<II', 0, 4096) + b'\0' * 20 + body)
PY
cp "$tmp/empty.hiv" corpus/hive/
if command -v hivexsh >/dev/null; then
  cp "$tmp/empty.hiv" "$tmp/system.hiv"
  printf 'add Select\ncd Select\nsetval 1\nCurrent\ndword:1\nadd ControlSet001\ncd ..\nadd ControlSet001\ncd ControlSet001\nadd Services\ncd Services\nadd storvsc\ncd storvsc\nsetval 2\nStart\ndword:0\nImagePath\nstring:system32\\drivers\\storvsc.sys\ncommit\n' | hivexsh -w "$tmp/system.hiv" >/dev/null
  cp "$tmp/system.hiv" corpus/hive/
fi
# Initramfs images: early uncompressed cpio, then gzip and zstd members.
mkdir -p "$tmp/ird/lib/modules/6.1.0/kernel/drivers/hv" "$tmp/ird/etc/modprobe.d"
echo x > "$tmp/ird/lib/modules/6.1.0/kernel/drivers/hv/hv_vmbus.ko"
echo "blacklist floppy" > "$tmp/ird/etc/modprobe.d/b.conf"
(cd "$tmp/ird" && find . | cpio -o -H newc --quiet > "$tmp/main.cpio")
gzip -kc "$tmp/main.cpio" > corpus/initramfs/gzip.img
zstd -qc "$tmp/main.cpio" > corpus/initramfs/zstd.img
cat "$tmp/main.cpio" corpus/initramfs/gzip.img > corpus/initramfs/early-gzip.img
ls corpus | while read -r t; do printf '%s: %s seeds\n' "$t" "$(ls "corpus/$t" | wc -l)"; done

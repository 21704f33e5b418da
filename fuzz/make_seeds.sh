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
targets=(descriptor sparse stream vhd vhdx contract cowd sesparse vhdx_log tar ovf manifest hive initramfs vhd_locator vhdx_locator volumes lvm_text xfs sequential)
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
  "$vd" convert -q --force "$tmp/$raw-monolithicSparse.vmdk" "corpus/vhd/$raw-dynamic.vhd" --block-size 512K
  "$vd" convert -q --force --type fixed "$tmp/$raw-monolithicSparse.vmdk" "corpus/vhd/$raw-fixed.vhd"
  qemu-img convert -f raw -O vpc "$tmp/$raw.raw" "corpus/vhd/$raw-qemu.vhd"
  "$vd" convert -q --force "$tmp/$raw-monolithicSparse.vmdk" "corpus/vhdx/$raw-dynamic.vhdx" --block-size 1M
  qemu-img convert -f raw -O vhdx -o block_size=1M "$tmp/$raw.raw" "corpus/vhdx/$raw-qemu.vhdx"
done
qemu-img create -q -f vmdk -b "$tmp/r-monolithicSparse.vmdk" -F vmdk "$tmp/delta.vmdk"
qemu-io -c "write -P 7 4096 8192" "$tmp/delta.vmdk" >/dev/null
cp "$tmp/delta.vmdk" corpus/sparse/
# The Disk contract: 32 bytes choosing ranges, then an image of each kind.
for f in corpus/vhd/r-dynamic.vhd corpus/vhd/r-fixed.vhd corpus/vhdx/r-dynamic.vhdx corpus/sparse/r-monolithicSparse.vmdk corpus/stream/r-streamOptimized.vmdk; do
  { head -c 32 /dev/urandom; cat "$f"; } > "corpus/contract/$(basename "$f")"
done
# Whole-MiB VHDX files are 5 to 12 MiB: compact copies of 2 MiB (fuzz/compact_vhdx.py)
# let the vhdx target reach the metadata, BAT and a payload block at its 2 MiB limit.
for f in corpus/vhdx/r-dynamic.vhdx corpus/vhdx/r-qemu.vhdx corpus/vhdx/big-dynamic.vhdx corpus/vhdx/big-qemu.vhdx; do
  python3 compact_vhdx.py "$f" "corpus/vhdx/compact-$(basename "$f")"
done
for f in corpus/vhdx/compact-r-dynamic.vhdx corpus/vhdx/compact-big-qemu.vhdx; do
  { head -c 32 /dev/urandom; cat "$f"; } > "corpus/contract/$(basename "$f")"
done
# VHDX with a log to replay: qemu leaves the log empty, so seed with its images.
cp corpus/vhdx/[rb]*.vhdx corpus/vhdx_log/
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
"$vd" convert -q --force --keep-chain "$tmp/delta.vmdk" "$tmp/kept.vhdx"
"$vd" convert -q --force --keep-chain "$tmp/delta.vmdk" "$tmp/kept.vhd"
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
# Guest disks for the volume layer: GPT with a FAT ESP and an ext4 root (mkfs.ext4 -d),
# MBR with an extended partition chaining two logical ones; with root, an LVM PV holding a
# VG of two LVs (loop device, activation off). All under 4 MiB.
mkdir -p "$tmp/guest/etc" "$tmp/guest/usr/lib/modules/6.1.0/kernel/drivers/hv" "$tmp/guest/boot"
printf 'NAME="Seed Linux"\nID=seed\n' > "$tmp/guest/usr/lib/os-release"
ln -s ../usr/lib/os-release "$tmp/guest/etc/os-release"
ln -s usr/lib "$tmp/guest/lib"
printf 'UUID=3f0c5a1e-9d2b-4c6a-8e1f-7a5b4c3d2e10 / ext4 defaults 0 1\n' > "$tmp/guest/etc/fstab"
echo x > "$tmp/guest/usr/lib/modules/6.1.0/kernel/drivers/hv/hv_vmbus.ko"
for i in $(seq 1 40); do echo "$i" > "$tmp/guest/boot/entry-$i"; done
truncate -s 4M "$tmp/gpt.img"
printf 'label: gpt\nstart=2048, size=1M, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B\ntype=0FC63DAF-8483-4772-8E79-3D69D8477DE4\n' \
  | sfdisk -q --no-reread --no-tell-kernel "$tmp/gpt.img"
truncate -s 1M "$tmp/esp.img" && mkfs.vfat -n ESP "$tmp/esp.img" >/dev/null
mmd -i "$tmp/esp.img" ::/EFI ::/EFI/BOOT && echo MZ > "$tmp/loader" && mcopy -i "$tmp/esp.img" "$tmp/loader" ::/EFI/BOOT/BOOTX64.EFI
dd if="$tmp/esp.img" of="$tmp/gpt.img" bs=1M seek=1 conv=notrunc status=none
truncate -s 2M "$tmp/root.ext4" && mkfs.ext4 -q -F -U 3f0c5a1e-9d2b-4c6a-8e1f-7a5b4c3d2e10 -d "$tmp/guest" "$tmp/root.ext4"
dd if="$tmp/root.ext4" of="$tmp/gpt.img" bs=1M seek=2 conv=notrunc status=none
cp "$tmp/gpt.img" corpus/volumes/gpt-esp-ext4.img
# Logical partitions are named by number, or sfdisk makes them primaries; the FAT one is
# a real file system.
truncate -s 4M "$tmp/mbr.img"
m="$tmp/mbr.img"
printf 'label: dos\nstart=2048, size=512K, type=83, bootable\nsize=2M, type=5\n%s5 : size=512K, type=82\n%s6 : size=1M, type=c\n' "$m" "$m" \
  | sfdisk -q --no-reread --no-tell-kernel "$m"
start6=$(sfdisk --dump "$m" | awk -F'[=,]' '/^[^ ]*6 :/ { gsub(/ /, "", $2); print $2 }')
truncate -s 1M "$tmp/logical.fat" && mkfs.vfat -n DATA "$tmp/logical.fat" >/dev/null
dd if="$tmp/logical.fat" of="$m" bs=512 seek="$start6" conv=notrunc status=none
cp "$m" corpus/volumes/mbr-logical.img
if [ "$(id -u)" = 0 ] && command -v lvm >/dev/null; then
  truncate -s 4M "$tmp/lvm.img"
  printf 'label: gpt\nstart=2048, type=E6D6D379-F507-44C2-A23C-238F2A3DF928\n' | sfdisk -q --no-reread --no-tell-kernel "$tmp/lvm.img"
  mkdir -p "$tmp/lvmconf"
  printf 'activation { udev_sync = 0 udev_rules = 0 }\nbackup { backup = 0 archive = 0 }\ndevices { obtain_device_list_from_udev = 0 use_devicesfile = 0 }\n' > "$tmp/lvmconf/lvm.conf"
  dev=$(losetup -f --show -o 1048576 "$tmp/lvm.img")
  l() { LVM_SYSTEM_DIR="$tmp/lvmconf" LVM_SUPPRESS_FD_WARNINGS=1 lvm "$1" --driverloaded n --devices "$dev" "${@:2}"; }
  { l pvcreate -q "$dev" && l vgcreate -q -s 256K seedvg "$dev" \
      && l lvcreate -q -an -Zn -n root -L 1M seedvg && l lvcreate -q -an -Zn -n data -L 512K seedvg \
      && l vgcfgbackup -q -f "$tmp/seedvg.txt" seedvg; } >/dev/null 2>&1 || true
  losetup -d "$dev"
  cp "$tmp/lvm.img" corpus/volumes/lvm.img
  [ -f "$tmp/seedvg.txt" ] && cp "$tmp/seedvg.txt" corpus/lvm_text/vgcfgbackup.txt
fi
# LVM metadata text as the PV's metadata area holds it.
cat > corpus/lvm_text/linear.txt <<'LVM'
rhel {
id = "Ab12Cd-34Ef-56Gh-78Ij-90Kl-12Mn-34OpQr"
seqno = 5
format = "lvm2"
status = ["RESIZEABLE", "READ", "WRITE"]
flags = []
extent_size = 8192
max_lv = 0
max_pv = 0
metadata_copies = 0

physical_volumes {

pv0 {
id = "Zy98Xw-76Vu-54Ts-32Rq-10Po-98Nm-76LkJi"
device = "/dev/sda3" # Hint only

status = ["ALLOCATABLE"]
flags = []
dev_size = 41940992
pe_start = 2048
pe_count = 5119
}
}

logical_volumes {

root {
id = "Qw12Er-34Ty-56Ui-78Op-90As-12Df-34GhJk"
status = ["READ", "WRITE", "VISIBLE"]
flags = []
creation_time = 1700000000
creation_host = "localhost"
segment_count = 2

segment1 {
start_extent = 0
extent_count = 4000
type = "striped"
stripe_count = 1 # linear
stripes = [
"pv0", 0
]
}
segment2 {
start_extent = 4000
extent_count = 100
type = "striped"
stripe_count = 1
stripes = [
"pv0", 4500
]
}
}

swap {
id = "Lk09Jh-87Gf-65Ds-43Aa-21Zx-09Cv-87BnMm"
status = ["READ", "WRITE", "VISIBLE"]
flags = []
segment_count = 1

segment1 {
start_extent = 0
extent_count = 256
type = "raid1"
stripe_count = 1
stripes = [
"pv0", 4100
]
}
}
}

}
# Generated by LVM2 version 2.03.16(2) (2022-05-18): Thu Nov 20 00:00:00 2025

contents = "Text Format Volume Group"
version = 1

description = ""

creation_host = "localhost"	# Linux localhost 6.1.0 #1 SMP x86_64
creation_time = 1700000000	# Thu Nov 20 00:00:00 2025

LVM
# XFS without a mount (mkfs.xfs -p, a prototype file): shortform, block and leaf
# directories, files, a symlink; whole, as their pages (below).
mkdir -p "$tmp/xfs-src"
printf 'UUID=x / xfs defaults 0 0\n' > "$tmp/xfs-src/fstab"
head -c 200000 /dev/urandom > "$tmp/xfs-src/big"
{
  echo /dev/null; echo '0 0'; echo 'd--755 0 0'
  echo 'etc d--755 0 0'; echo "fstab ---644 0 0 $tmp/xfs-src/fstab"; echo 'os-release l--777 0 0 ../usr/lib/os-release'; echo '$'
  echo "big ---644 0 0 $tmp/xfs-src/big"
  echo 'many d--755 0 0'; for i in $(seq 1 300); do echo "entry_$i ---644 0 0 $tmp/xfs-src/fstab"; done; echo '$'
  echo 'few d--755 0 0'; for i in $(seq 1 20); do echo "f$i ---644 0 0 $tmp/xfs-src/fstab"; done; echo '$'
  echo '$'
} > "$tmp/xfs.proto"
for bs in 4096 1024; do
  truncate -s 16M "$tmp/x-$bs.img"
  TEST_DIR=1 TEST_DEV=1 QA_CHECK_FS=1 mkfs.xfs -q -f -b size=$bs -p "$tmp/xfs.proto" "$tmp/x-$bs.img"
  cp "$tmp/x-$bs.img" "corpus/xfs/proto-$bs.img"
done
truncate -s 16M "$tmp/x-empty.img"
TEST_DIR=1 TEST_DEV=1 QA_CHECK_FS=1 mkfs.xfs -q -f "$tmp/x-empty.img"
cp "$tmp/x-empty.img" corpus/xfs/empty.img
cp corpus/xfs/proto-4096.img corpus/volumes/xfs-whole-disk.img
# The xfs and volumes targets read whole images in the paged encoding (their non-zero
# pages): a 16 MiB XFS is then a few hundred KiB of input.
for f in corpus/xfs/*.img corpus/volumes/*.img; do
  python3 page_image.py "$f" "${f%.img}.pages" && rm "$f"
done
# The one-pass reader reads what the random-access stream reader reads.
cp corpus/stream/* corpus/sequential/
ls corpus | while read -r t; do printf '%s: %s seeds\n' "$t" "$(ls "corpus/$t" | wc -l)"; done

#!/usr/bin/env bash
# Seeds for the fuzz targets: the hand-made fixtures and small images from qemu-img and
# vdconv itself.
set -euo pipefail
cd "$(dirname "$0")"
root=..
vd="$root/target/release/vdconv"
[ -x "$vd" ] || (cd "$root" && cargo build --release -q)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p corpus/{descriptor,sparse,stream,vhd,vhdx}
head -c 196608 /dev/urandom > "$tmp/r.raw"
printf 'hello' | dd of="$tmp/r.raw" bs=1 seek=70000 conv=notrunc status=none
for sub in monolithicSparse streamOptimized twoGbMaxExtentSparse; do
  qemu-img convert -f raw -O vmdk -o subformat=$sub "$tmp/r.raw" "$tmp/$sub.vmdk"
done
cp "$tmp/monolithicSparse.vmdk" "$tmp/twoGbMaxExtentSparse-s001.vmdk" corpus/sparse/
cp "$root"/fixtures/handmade/corrupt/*.vmdk "$root"/fixtures/handmade/split-sparse/disk-s00*.vmdk corpus/sparse/
cp "$tmp/streamOptimized.vmdk" "$root/fixtures/handmade/stream-footer-padded.vmdk" corpus/stream/
find "$root/fixtures/handmade" -name '*.vmdk' -size -4k -exec cp {} corpus/descriptor/ \;
cp "$tmp/twoGbMaxExtentSparse.vmdk" corpus/descriptor/
"$vd" convert -q "$tmp/monolithicSparse.vmdk" corpus/vhd/dynamic.vhd --block-size 512K
"$vd" convert -q --type fixed "$tmp/monolithicSparse.vmdk" corpus/vhd/fixed.vhd
qemu-img convert -f raw -O vpc "$tmp/r.raw" corpus/vhd/qemu.vhd
"$vd" convert -q "$tmp/monolithicSparse.vmdk" corpus/vhdx/dynamic.vhdx --block-size 1M
qemu-img convert -f raw -O vhdx -o block_size=1M "$tmp/r.raw" corpus/vhdx/qemu.vhdx
ls -la corpus/*

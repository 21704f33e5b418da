#!/usr/bin/env python3
"""vdconv against qemu-img, side by side in one run (a benchmark, not a test).

Builds a deterministic corpus, converts each source to fixed VHD, dynamic VHD and dynamic
VHDX with both tools, alternating them, RUNS timed runs each after a warm-up, outputs on
/dev/shm so disk writeback does not dominate, and prints for each case the median and best
wall times, the ratios vdconv/qemu-img and both tools' peak RSS (/usr/bin/time -v).

The chain rows flatten a 3-deep snapshot chain (the monolithicSparse disk as the base,
three qemu-made deltas over it, each rewriting 1 MiB pieces spread over the disk, the
last also zeroing some of its parent's data with zeroed grains): vdconv reads it as one
disk, qemu-img convert follows the backing files.

Then `vdconv inspect` on a 20 GiB monolithicSparse guest holding 2 GiB of data (a Debian
root made by mkfs.ext4 -d, a 40 MiB initrd): time, bytes of the disk read (its JSON
bytes_read), bytes read from files (rchar), peak RSS; targets: under 2 s, under 200 MiB.

Then a whole-VM export: the streamOptimized disk as a single-disk OVA (descriptor,
SHA-256 manifest, disk, as ovftool lays it out) converted to dynamic VHDX by vdconv from
the file and from a pipe (`cat vm.ova | vdconv convert - ...`, the manifest checked either
way), against `tar -x` of the disk into /dev/shm followed by `qemu-img convert`.

Usage: python3 bench/bench.py [--runs N] [--corpus DIR] [--only SUBSTRING] [--quick] [--cold] [--detail]
                              [--batch | --no-batch]
  --only inspect   only the inspect case (the conversion corpus is then not built)
  --quick   a 256 MiB corpus instead of 2 GiB (for trying changes; not for the record)
  --cold    evict the source from the page cache before every run (a first conversion)
  --detail  every run's wall and system seconds, on stderr
  --batch   only the batch rows; --no-batch: none of them
After the table: the all-core inflate ceiling for streamOptimized and the output write
floor for monolithicFlat -> fixed VHD, each with the fraction vdconv reaches. Then the
batch rows: a 16-disk plan (64 MiB disks, 16 MiB with --quick, the four hosted layouts
qemu-img writes) to dynamic VHDX, `vdconv batch -j 2` against a shell loop of
`qemu-img convert` and against `vdconv batch -j 1`, the three alternating.
Needs: qemu-img, /usr/bin/time, a release build (cargo build --release); for the guest:
sfdisk, mkfs.vfat, mtools, mkfs.ext4 (-d, -E offset), cpio, zstd.
"""

import argparse
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VDCONV = os.path.join(ROOT, "target", "release", "vdconv")
# One output folder per run, removed at the end: two benchmarks on one machine must not
# remove each other's files.
OUT_DIR = "/dev/shm/vdconv-bench-%d" % os.getpid()
MIB = 1 << 20


def sh(*args):
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL)


def make_raw(path, size):
    """1 MiB pieces cycling (by a seeded shuffle) through incompressible data,
    compressible text, written zeros and holes."""
    rnd = random.Random(20261126)
    text = b"".join(b"line %08d: the quick brown fox jumps over the lazy dog\n" % i for i in range(20000))
    with open(path, "wb") as f:
        f.truncate(size)
        for i in range(size // MIB):
            kind = rnd.choice(("random", "text", "zeros", "hole"))
            if kind == "hole":
                continue
            f.seek(i * MIB)
            if kind == "random":
                f.write(rnd.randbytes(MIB))
            elif kind == "text":
                start = rnd.randrange(0, len(text) - MIB)
                f.write(text[start : start + MIB])
            else:
                f.write(bytes(MIB))


def build_corpus(d, size):
    os.makedirs(d, exist_ok=True)
    raw = os.path.join(d, "disk.raw")
    stamp = os.path.join(d, "stamp-%d" % size)
    sources = {
        "monolithicSparse": os.path.join(d, "sparse.vmdk"),
        "streamOptimized": os.path.join(d, "stream.vmdk"),
        "monolithicFlat": os.path.join(d, "flat.vmdk"),
        "empty-2TiB-sparse": os.path.join(d, "empty.vmdk"),
    }
    if not os.path.exists(stamp):
        print("building corpus in %s ..." % d, file=sys.stderr)
        make_raw(raw, size)
        for sub, key in (("monolithicSparse", "monolithicSparse"), ("streamOptimized", "streamOptimized"), ("monolithicFlat", "monolithicFlat")):
            out = sources[key]
            if os.path.exists(out):
                os.remove(out)
            sh("qemu-img", "convert", "-f", "raw", "-O", "vmdk", "-o", "subformat=" + sub, raw, out)
        if os.path.exists(sources["empty-2TiB-sparse"]):
            os.remove(sources["empty-2TiB-sparse"])
        sh("qemu-img", "create", "-f", "vmdk", sources["empty-2TiB-sparse"], "2T")
        open(stamp, "w").close()
    sources["chain-3-deep"] = build_chain(d, size)
    return sources


def build_chain(d, size):
    """sparse.vmdk <- chain-1 <- chain-2 (twoGbMaxExtentSparse) <- chain-3: each delta
    writes a 1 MiB piece every 8 MiB (at its own phase), and chain-3 also zeroes a 1 MiB
    piece every 32 MiB of what is below (zeroed grains). Returns the top."""
    links = [os.path.join(d, "chain-%d.vmdk" % i) for i in (1, 2, 3)]
    stamp = os.path.join(d, "stamp-chain-%d" % size)
    if os.path.exists(stamp):
        return links[-1]
    print("building the 3-deep chain in %s ..." % d, file=sys.stderr)
    for path in links:
        for f in os.listdir(d):
            if f.startswith(os.path.basename(path)[:-5]):
                os.remove(os.path.join(d, f))
    parents = ["sparse.vmdk", "chain-1.vmdk", "chain-2.vmdk"]
    options = ["zeroed_grain=on", "subformat=twoGbMaxExtentSparse", "zeroed_grain=on"]
    mib = size // MIB
    for i, (path, parent, opt) in enumerate(zip(links, parents, options)):
        sh("qemu-img", "create", "-q", "-f", "vmdk", "-o", opt, "-b", parent, "-F", "vmdk", path)
        cmds = []
        for at in range(i * 3, mib, 8):
            cmds += ["-c", "write -q -P %d %dM 1M" % (0x40 + 16 * i + at % 13, at)]
        if i == 2:
            for at in range(5, mib, 32):
                cmds += ["-c", "write -q -z %dM 1M" % at]
        sh("qemu-io", "-f", "vmdk", *cmds, path)
    open(stamp, "w").close()
    return links[-1]


CASES = [
    # (source, output kind, vdconv args, qemu-img args, extension)
    ("streamOptimized", "dynamic VHDX", ["-O", "vhdx"], ["-O", "vhdx"], "vhdx"),
    ("streamOptimized", "fixed VHD", ["-O", "vhd", "--type", "fixed"], ["-O", "vpc", "-o", "subformat=fixed"], "vhd"),
    ("monolithicSparse", "dynamic VHD", ["-O", "vhd"], ["-O", "vpc"], "vhd"),
    ("monolithicSparse", "dynamic VHDX", ["-O", "vhdx"], ["-O", "vhdx"], "vhdx"),
    ("monolithicFlat", "fixed VHD", ["-O", "vhd", "--type", "fixed"], ["-O", "vpc", "-o", "subformat=fixed"], "vhd"),
    ("monolithicFlat", "dynamic VHDX", ["-O", "vhdx"], ["-O", "vhdx"], "vhdx"),
    ("empty-2TiB-sparse", "dynamic VHDX", ["-O", "vhdx"], ["-O", "vhdx"], "vhdx"),
    ("chain-3-deep", "dynamic VHDX", ["-O", "vhdx"], ["-O", "vhdx"], "vhdx"),
    ("chain-3-deep", "dynamic VHD", ["-O", "vhd"], ["-O", "vpc"], "vhd"),
]


def drop_cache(paths):
    """Evicts the files' pages from the page cache, so the next run reads them from the
    device as a first conversion of an exported disk does."""
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


GIB = 1 << 30
INSPECT_CASE = "inspect 20GiB guest"


def write_guest_tree(tree, data_size):
    """A Debian 12 root ready for Azure (GRUB with console=ttyS0, netplan on DHCP,
    cloud-init, the Hyper-V modules in a zstd initrd of Debian's usual size, ~40 MiB) and
    data_size bytes of incompressible files in /srv/data, 1 MiB each."""
    ver = "6.1.0-18-amd64"
    root_uuid = "5f2b8c1e-7a4d-4f8e-9c3b-2d1e0f9a8b7c"
    rnd = random.Random(20261126)

    def put(path, data):
        full = os.path.join(tree, path.lstrip("/"))
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "wb") as f:
            f.write(data if isinstance(data, bytes) else data.encode())

    put("/etc/os-release", 'NAME="Debian GNU/Linux"\nVERSION_ID="12"\nID=debian\n')
    put("/etc/fstab", "UUID=%s / ext4 errors=remount-ro 0 1\nUUID=A1B2-C3D4 /boot/efi vfat umask=0077 0 1\n" % root_uuid)
    os.symlink("usr/lib", os.path.join(tree, "lib"))
    put("/boot/vmlinuz-" + ver, rnd.randbytes(8 * MIB))
    put("/boot/config-" + ver, "CONFIG_HYPERV=m\nCONFIG_HYPERV_STORAGE=m\nCONFIG_HYPERV_NET=m\nCONFIG_UDF_FS=m\nCONFIG_VFAT_FS=m\n")
    put("/boot/grub/grub.cfg", "menuentry 'Debian GNU/Linux' {\n\tlinux /boot/vmlinuz-%s root=UUID=%s ro console=ttyS0,115200n8\n\tinitrd /boot/initrd.img-%s\n}\n" % (ver, root_uuid, ver))
    put("/etc/netplan/50-cloud-init.yaml", "network:\n  version: 2\n  ethernets:\n    eth0:\n      dhcp4: true\n")
    put("/usr/bin/cloud-init", "#!/usr/bin/python3\n")
    put("/etc/cloud/cloud.cfg", "datasource_list: [ Azure, None ]\n")
    # The initrd: early microcode, then ~110 MiB of modules (a third incompressible) as
    # one zstd archive, as update-initramfs makes it with MODULES=most.
    stage = tree + ".initrd"
    shutil.rmtree(stage, ignore_errors=True)
    text = b"".join(b"symbol_%06d: module code and data\n" % i for i in range(2000))
    for i in range(1100):
        blob = rnd.randbytes(32 * 1024) + text[: 64 * 1024]
        put_at = os.path.join(stage, "usr/lib/modules/%s/kernel/drivers/misc/m%04d.ko" % (ver, i))
        os.makedirs(os.path.dirname(put_at), exist_ok=True)
        with open(put_at, "wb") as f:
            f.write(blob + blob[: 4096])
    for name, sub in (("hv_vmbus", "hv"), ("hv_storvsc", "scsi"), ("hv_netvsc", "net/hyperv")):
        path = "usr/lib/modules/%s/kernel/drivers/%s/%s.ko" % (ver, sub, name)
        put(path, b"\x7fELF module")
        os.makedirs(os.path.dirname(os.path.join(stage, path)), exist_ok=True)
        shutil.copy(os.path.join(tree, path), os.path.join(stage, path))
    listing = subprocess.run("find . | sort", shell=True, cwd=stage, check=True, capture_output=True).stdout
    archive = subprocess.run(["cpio", "-o", "-H", "newc", "--quiet"], cwd=stage, input=listing, check=True, capture_output=True).stdout
    initrd = subprocess.run(["zstd", "-q", "-c", "-3"], input=archive, check=True, capture_output=True).stdout
    put("/boot/initrd.img-" + ver, initrd)
    shutil.rmtree(stage)
    for i in range(data_size // MIB):
        put("/srv/data/%03d/file-%05d.bin" % (i // 256, i), rnd.randbytes(MIB))
    return root_uuid


def build_guest(d, disk_size, data_size):
    """The inspect benchmark's guest, made once: a sparse raw disk of disk_size (GPT: BIOS
    boot, a 64 MiB FAT ESP with the fallback loader, and an ext4 root made by mkfs.ext4 -d
    in place at its offset) holding data_size of data, as a monolithicSparse VMDK."""
    os.makedirs(d, exist_ok=True)
    vmdk = os.path.join(d, "guest.vmdk")
    stamp = os.path.join(d, "stamp-guest-%d-%d" % (disk_size, data_size))
    if os.path.exists(stamp):
        return vmdk
    print("building the inspect guest in %s ..." % d, file=sys.stderr)
    tree = os.path.join(d, "tree")
    shutil.rmtree(tree, ignore_errors=True)
    root_uuid = write_guest_tree(tree, data_size)
    raw = os.path.join(d, "guest.raw")
    with open(raw, "wb") as f:
        f.truncate(disk_size)
    script = "label: gpt\nstart=2048, size=1M, type=21686148-6449-6E6F-744E-656564454649\nsize=64M, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B\ntype=0FC63DAF-8483-4772-8E79-3D69D8477DE4\n"
    subprocess.run(["sfdisk", "-q", "--no-reread", "--no-tell-kernel", raw], input=script.encode(), check=True)
    parts = json.loads(subprocess.run(["sfdisk", "--json", raw], check=True, capture_output=True).stdout)["partitiontable"]["partitions"]
    esp = os.path.join(d, "esp.img")
    with open(esp, "wb") as f:
        f.truncate(parts[1]["size"] * 512)
    sh("mkfs.vfat", "-F", "32", "-i", "A1B2C3D4", esp)
    with open(os.path.join(d, "BOOTX64.EFI"), "wb") as f:
        f.write(b"MZ loader")
    sh("mmd", "-i", esp, "::/EFI", "::/EFI/BOOT")
    sh("mcopy", "-i", esp, os.path.join(d, "BOOTX64.EFI"), "::/EFI/BOOT/BOOTX64.EFI")
    sh("dd", "if=" + esp, "of=" + raw, "bs=1M", "seek=%d" % (parts[1]["start"] * 512 // MIB), "conv=notrunc,sparse", "status=none")
    root = parts[2]
    sh("mkfs.ext4", "-q", "-F", "-U", root_uuid, "-E", "offset=%d" % (root["start"] * 512), "-d", tree, raw, "%dk" % (root["size"] // 2))
    shutil.rmtree(tree)
    if os.path.exists(vmdk):
        os.remove(vmdk)
    sh("qemu-img", "convert", "-f", "raw", "-O", "vmdk", "-o", "subformat=monolithicSparse", raw, vmdk)
    os.remove(raw)
    os.remove(esp)
    open(stamp, "w").close()
    return vmdk


def inspect_case(vmdk, runs, cold, detail):
    """Times vdconv inspect on the guest (after a warm-up; with --cold the VMDK is evicted
    before every run) and reports bytes_read from its JSON, the bytes it read from files
    (rchar: a shell's /proc/PID/io gains its reaped children's reads), and peak RSS."""
    cmd = [VDCONV, "inspect", "--json", "--target", "azure", vmdk]
    wrapper = 'grep ^rchar /proc/$$/io >&2; "$@"; s=$?; grep ^rchar /proc/$$/io >&2; exit $s'
    results = []
    for i in range(runs + 1):
        drop_cache([vmdk] if cold else [])
        t = time.perf_counter()
        p = subprocess.run(["sh", "-c", wrapper, "sh", "/usr/bin/time", "-v"] + cmd, capture_output=True, text=True)
        wall = time.perf_counter() - t
        if p.returncode not in (0, 1):
            sys.exit("failed: %s\n%s" % (" ".join(cmd), p.stderr))
        doc = json.loads(p.stdout)
        rchar = [int(x) for x in re.findall(r"^rchar: (\d+)", p.stderr, re.M)]
        rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr).group(1))
        if i > 0 or cold:
            results.append((wall, doc["bytes_read"], rchar[1] - rchar[0], rss, doc["ready"]))
    if detail:
        print("  inspect: %s" % " ".join("%.3f" % r[0] for r in results), file=sys.stderr)
    return results


def timed(cmd, out, cold=()):
    """Runs cmd under /usr/bin/time -v, after evicting the files in `cold` from the page
    cache; returns (wall seconds, peak RSS KiB, system seconds)."""
    if os.path.exists(out):
        os.remove(out)
    drop_cache(cold)
    t = time.perf_counter()
    p = subprocess.run(["/usr/bin/time", "-v"] + cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - t
    if p.returncode != 0:
        sys.exit("failed: %s\n%s" % (" ".join(cmd), p.stderr))
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr).group(1))
    system = float(re.search(r"System time \(seconds\): ([0-9.]+)", p.stderr).group(1))
    os.remove(out)
    return wall, rss, system


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--corpus", default="/var/tmp/vdconv-bench")
    ap.add_argument("--only", default="")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--cold", action="store_true", help="evict the source from the page cache before every run")
    ap.add_argument("--detail", action="store_true", help="print every run's wall and system time")
    ap.add_argument("--batch", action="store_true", help="only the batch rows")
    ap.add_argument("--no-batch", action="store_true", help="no batch rows")
    a = ap.parse_args()
    if a.batch:
        batch_rows(a)
        return
    size = 256 * MIB if a.quick else 2048 * MIB
    converting = any(not a.only or a.only in c[0] + " " + c[1] for c in CASES)
    sources = build_corpus(a.corpus + ("-quick" if a.quick else ""), size) if converting else {}
    out_dir = OUT_DIR
    os.makedirs(out_dir, exist_ok=True)
    print("| source | output | vdconv median s | qemu-img median s | median ratio | best ratio | vdconv peak RSS MiB | qemu-img peak RSS MiB |")
    print("|---|---|---|---|---|---|---|---|")
    best_stream = None
    best_flat = None
    for src_key, kind, vargs, qargs, ext in CASES:
        if a.only and a.only not in src_key + " " + kind:
            continue
        src = sources[src_key]
        out = os.path.join(out_dir, "out." + ext)
        vcmd = [VDCONV, "convert", "-q", "--force", "--progress", "never"] + vargs + [src, out]
        qcmd = ["qemu-img", "convert", "-f", "vmdk"] + qargs + [src, out]
        # Every file the source reads: the flat extent sits beside its descriptor.
        cold = [src] + ([os.path.join(os.path.dirname(src), "flat-flat.vmdk")] if src_key == "monolithicFlat" else [])
        if src_key == "chain-3-deep":
            folder = os.path.dirname(src)
            cold = [os.path.join(folder, f) for f in os.listdir(folder) if f.startswith("chain-") and f.endswith(".vmdk")]
            cold.append(sources["monolithicSparse"])
        cold = cold if a.cold else []
        timed(vcmd, out, cold)  # warm-up, both
        timed(qcmd, out, cold)
        v, q = [], []
        for i in range(a.runs):
            # Swap who goes first each round: the first run after a pause pays for any
            # page cache the machine reclaimed meanwhile.
            if i % 2 == 0:
                v.append(timed(vcmd, out, cold))
                q.append(timed(qcmd, out, cold))
            else:
                q.append(timed(qcmd, out, cold))
                v.append(timed(vcmd, out, cold))
        if a.detail:
            for name, runs in (("vdconv", v), ("qemu-img", q)):
                print("  %s %s: %s" % (kind, name, " ".join("%.3f/%.3f" % (x[0], x[2]) for x in runs)), file=sys.stderr)
        vm, qm = statistics.median(x[0] for x in v), statistics.median(x[0] for x in q)
        vb, qb = min(x[0] for x in v), min(x[0] for x in q)
        if src_key == "streamOptimized":
            best_stream = min(vb, best_stream or vb)
        if (src_key, kind) == ("monolithicFlat", "fixed VHD"):
            best_flat = (vb, qb)
        print(
            "| %s | %s | %.3f | %.3f | %.2f | %.2f | %.1f | %.1f |"
            % (src_key, kind, vm, qm, vm / qm, vb / qb, max(x[1] for x in v) / 1024, max(x[1] for x in q) / 1024),
            flush=True,
        )
    if not a.only or a.only in INSPECT_CASE:
        # 20 GiB holding 2 GiB of data (--quick: 2 GiB holding 256 MiB).
        disk, data = (2 * GIB, 256 * MIB) if a.quick else (20 * GIB, 2 * GIB)
        guest = build_guest(os.path.join(a.corpus + ("-quick" if a.quick else ""), "guest"), disk, data)
        r = inspect_case(guest, a.runs, a.cold, a.detail)
        walls = [x[0] for x in r]
        print()
        print("| case | median s | best s | bytes_read MiB | file bytes read MiB | peak RSS MiB | ready |")
        print("|---|---|---|---|---|---|---|")
        print(
            "| inspect --target azure, %d GiB monolithicSparse guest with %d MiB of data%s | %.3f | %.3f | %.1f | %.1f | %.1f | %s |"
            % (disk // GIB, data // MIB, " (cold)" if a.cold else "", statistics.median(walls), min(walls),
               max(x[1] for x in r) / MIB, max(x[2] for x in r) / MIB, max(x[3] for x in r) / 1024, r[0][4]),
            flush=True,
        )
        print("targets: under 2 s (%s), under 200 MiB read (%s)" % (
            "met" if max(walls) < 2 else "NOT met", "met" if max(max(x[1], x[2]) for x in r) < 200 * MIB else "NOT met"))
    if not a.only or a.only in "ova OVA":
        ova_rows(sources["streamOptimized"], out_dir, a)
    # Both references are measured from memory: set against warm runs only.
    if not a.cold:
        if best_stream:
            inflate_ceiling(sources["streamOptimized"], best_stream, a.runs)
        if best_flat:
            write_floor(sources["monolithicFlat"], out_dir, best_flat, a.runs)
    if not a.no_batch and not a.only:
        batch_rows(a)


BATCH_LAYOUTS = ("streamOptimized", "monolithicSparse", "twoGbMaxExtentSparse", "monolithicFlat")


def build_batch_corpus(d, disks, size, out_dir):
    """`disks` VMDKs of `size` bytes, cycling through the hosted layouts, each from its
    own seeded raw disk (as bench.py's corpus: random, text, zeros, holes), and a plan
    converting each to dynamic VHDX in out_dir. Returns (plan, [(source, output)])."""
    os.makedirs(d, exist_ok=True)
    stamp = os.path.join(d, "stamp-%d-%d" % (disks, size))
    pairs = []
    for i in range(disks):
        src = os.path.join(d, "d%02d.vmdk" % i)
        pairs.append((src, os.path.join(out_dir, "d%02d.vhdx" % i)))
    if not os.path.exists(stamp):
        print("building batch corpus in %s ..." % d, file=sys.stderr)
        for f in os.listdir(d):
            os.remove(os.path.join(d, f))
        rnd = random.Random(20261127)
        text = b"".join(b"line %08d: the quick brown fox jumps over the lazy dog\n" % i for i in range(20000))
        for i, (src, _) in enumerate(pairs):
            raw = os.path.join(d, "raw")
            with open(raw, "wb") as f:
                f.truncate(size)
                for m in range(size // MIB):
                    kind = rnd.choice(("random", "text", "zeros", "hole"))
                    if kind == "hole":
                        continue
                    f.seek(m * MIB)
                    if kind == "random":
                        f.write(rnd.randbytes(MIB))
                    elif kind == "text":
                        start = rnd.randrange(0, len(text) - MIB)
                        f.write(text[start : start + MIB])
                    else:
                        f.write(bytes(MIB))
            layout = BATCH_LAYOUTS[i % len(BATCH_LAYOUTS)]
            sh("qemu-img", "convert", "-f", "raw", "-O", "vmdk", "-o", "subformat=" + layout, raw, src)
            os.remove(raw)
        open(stamp, "w").close()
    plan = os.path.join(d, "plan.jsonl")
    with open(plan, "w") as f:
        for src, dst in pairs:
            f.write('{"source": "%s", "destination": "%s"}\n' % (src, dst))
    return plan, pairs


def timed_batch(cmd, out_dir):
    """Runs a whole batch (a vdconv plan or a shell loop) from an empty output folder
    (no records: every item converts); returns (wall seconds, peak RSS KiB, system s)."""
    for f in os.listdir(out_dir):
        os.remove(os.path.join(out_dir, f))
    t = time.perf_counter()
    p = subprocess.run(["/usr/bin/time", "-v"] + cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - t
    if p.returncode != 0:
        sys.exit("failed: %s\n%s" % (" ".join(cmd), p.stderr))
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr).group(1))
    system = float(re.search(r"System time \(seconds\): ([0-9.]+)", p.stderr).group(1))
    return wall, rss, system


def batch_rows(a):
    """A 16-disk plan: `vdconv batch -j 2` against a shell loop of qemu-img convert
    (target: at most 0.5x) and against `vdconv batch -j 1` (target: at most 0.65x). The
    three alternate, their order rotating each round, after a warm-up of each."""
    size = 16 * MIB if a.quick else 64 * MIB
    out_dir = "/dev/shm/vdconv-bench/batch"
    os.makedirs(out_dir, exist_ok=True)
    plan, pairs = build_batch_corpus(a.corpus + "-batch" + ("-quick" if a.quick else ""), 16, size, out_dir)
    loop = " && ".join("qemu-img convert -f vmdk -O vhdx '%s' '%s'" % p for p in pairs)
    cmds = {
        "vdconv -j 2": [VDCONV, "batch", "-q", "-j", "2", plan],
        "qemu-img loop": ["sh", "-c", loop],
        "vdconv -j 1": [VDCONV, "batch", "-q", "-j", "1", plan],
    }
    names = list(cmds)
    for n in names:
        timed_batch(cmds[n], out_dir)  # warm-up
    runs = {n: [] for n in names}
    for i in range(a.runs):
        for n in names[i % 3 :] + names[: i % 3]:
            runs[n].append(timed_batch(cmds[n], out_dir))
    if a.detail:
        for n in names:
            print("  batch %s: %s" % (n, " ".join("%.3f/%.3f" % (x[0], x[2]) for x in runs[n])), file=sys.stderr)
    for f in os.listdir(out_dir):
        os.remove(os.path.join(out_dir, f))
    med = {n: statistics.median(x[0] for x in runs[n]) for n in names}
    best = {n: min(x[0] for x in runs[n]) for n in names}
    print()
    print("Batch: 16 disks of %d MiB (%s), to dynamic VHDX, %d runs each:" % (size // MIB, ", ".join(BATCH_LAYOUTS), a.runs))
    print()
    print("| run | median s | best s | peak RSS MiB |")
    print("|---|---|---|---|")
    for n in names:
        print("| %s | %.3f | %.3f | %.1f |" % (n, med[n], best[n], max(x[1] for x in runs[n]) / 1024))
    print()
    for other, target in (("qemu-img loop", 0.5), ("vdconv -j 1", 0.65)):
        print(
            "vdconv -j 2 / %s: best %.2f, median %.2f (target at most %.2f)"
            % (other, best["vdconv -j 2"] / best[other], med["vdconv -j 2"] / med[other], target)
        )


OVF_TEMPLATE = """<?xml version="1.0" encoding="UTF-8"?>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1" xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData" xmlns:vmw="http://www.vmware.com/schema/ovf" xmlns:vssd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData">
  <References>
    <File ovf:href="vm-disk1.vmdk" ovf:id="file1" ovf:size="%(stored)d"/>
  </References>
  <DiskSection>
    <Info>Virtual disk information</Info>
    <Disk ovf:capacity="%(capacity)d" ovf:capacityAllocationUnits="byte" ovf:diskId="vmdisk1" ovf:fileRef="file1" ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"/>
  </DiskSection>
  <VirtualSystem ovf:id="bench">
    <Info>A virtual machine</Info>
    <Name>bench</Name>
    <OperatingSystemSection ovf:id="100" vmw:osType="other4xLinux64Guest"><Info>os</Info></OperatingSystemSection>
    <VirtualHardwareSection>
      <Info>Virtual hardware requirements</Info>
      <Item><rasd:Address>0</rasd:Address><rasd:InstanceID>3</rasd:InstanceID><rasd:ResourceSubType>VirtualSCSI</rasd:ResourceSubType><rasd:ResourceType>6</rasd:ResourceType></Item>
      <Item><rasd:AddressOnParent>0</rasd:AddressOnParent><rasd:HostResource>ovf:/disk/vmdisk1</rasd:HostResource><rasd:InstanceID>4</rasd:InstanceID><rasd:Parent>3</rasd:Parent><rasd:ResourceType>17</rasd:ResourceType></Item>
      <vmw:Config ovf:required="false" vmw:key="firmware" vmw:value="efi"/>
    </VirtualHardwareSection>
  </VirtualSystem>
</Envelope>
"""


def build_ova(stream_vmdk, capacity):
    """A single-disk OVA of the streamOptimized disk beside it, in ovftool's order."""
    d = os.path.join(os.path.dirname(stream_vmdk), "ova")
    ova = os.path.join(os.path.dirname(stream_vmdk), "vm.ova")
    stamp = ova + ".stamp-%d" % os.path.getmtime(stream_vmdk)
    if os.path.exists(stamp):
        return ova
    import hashlib
    os.makedirs(d, exist_ok=True)
    disk = os.path.join(d, "vm-disk1.vmdk")
    if os.path.exists(disk):
        os.remove(disk)
    os.link(stream_vmdk, disk)
    with open(os.path.join(d, "vm.ovf"), "w") as f:
        f.write(OVF_TEMPLATE % {"stored": os.path.getsize(disk), "capacity": capacity})
    lines = []
    for name in ("vm.ovf", "vm-disk1.vmdk"):
        h = hashlib.sha256()
        with open(os.path.join(d, name), "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        lines.append("SHA256(%s)= %s\n" % (name, h.hexdigest()))
    with open(os.path.join(d, "vm.mf"), "w") as f:
        f.writelines(lines)
    sh("tar", "--format=ustar", "--owner=0", "--group=0", "--numeric-owner", "-cf", ova, "-C", d, "vm.ovf", "vm.mf", "vm-disk1.vmdk")
    open(stamp, "w").close()
    return ova


def ova_rows(stream_vmdk, out_dir, a):
    """The OVA from a file and from a pipe against tar -x + qemu-img convert."""
    import json
    info = subprocess.run(["qemu-img", "info", "--output=json", stream_vmdk], check=True, capture_output=True, text=True).stdout
    capacity = json.loads(info)["virtual-size"]
    ova = build_ova(stream_vmdk, capacity)
    out = os.path.join(out_dir, "out.vhdx")
    unpacked = os.path.join(out_dir, "unpacked")
    os.makedirs(unpacked, exist_ok=True)
    base = "tar -xf %s -C %s vm-disk1.vmdk && qemu-img convert -f vmdk -O vhdx %s/vm-disk1.vmdk %s; s=$?; rm -f %s/vm-disk1.vmdk; exit $s" % (ova, unpacked, unpacked, out, unpacked)
    qcmd = ["sh", "-c", base]
    cases = (
        ("OVA file", [VDCONV, "convert", "-q", "--force", "--progress", "never", "-O", "vhdx", ova, out]),
        ("OVA pipe", ["sh", "-c", "cat %s | %s convert -q --force --progress never -O vhdx - %s" % (ova, VDCONV, out)]),
    )
    print()
    print("Single-disk OVA (%.0f MiB, SHA-256 manifest) -> dynamic VHDX; baseline: tar -x into /dev/shm, then qemu-img convert" % (os.path.getsize(ova) / MIB))
    print()
    print("| input | vdconv median s | tar -x + qemu-img median s | median ratio | best ratio | vdconv peak RSS MiB | baseline peak RSS MiB |")
    print("|---|---|---|---|---|---|---|")
    cold = [ova] if a.cold else []
    for label, vcmd in cases:
        timed(vcmd, out, cold)  # warm-up, both
        timed(qcmd, out, cold)
        v, q = [], []
        for i in range(a.runs):
            if i % 2 == 0:
                v.append(timed(vcmd, out, cold))
                q.append(timed(qcmd, out, cold))
            else:
                q.append(timed(qcmd, out, cold))
                v.append(timed(vcmd, out, cold))
        if a.detail:
            for name, runs in (("vdconv", v), ("tar+qemu-img", q)):
                print("  %s %s: %s" % (label, name, " ".join("%.3f/%.3f" % (x[0], x[2]) for x in runs)), file=sys.stderr)
        vm, qm = statistics.median(x[0] for x in v), statistics.median(x[0] for x in q)
        vb, qb = min(x[0] for x in v), min(x[0] for x in q)
        print(
            "| %s | %.3f | %.3f | %.2f | %.2f | %.1f | %.1f |"
            % (label, vm, qm, vm / qm, vb / qb, max(x[1] for x in v) / 1024, max(x[1] for x in q) / 1024),
            flush=True,
        )


def inflate_ceiling(stream, vdconv_best, runs):
    """The all-core inflate throughput from memory (examples/inflate_ceiling.rs), and the
    fraction of it vdconv's best streamOptimized conversion reaches."""
    sh("cargo", "build", "--release", "-q", "--example", "inflate_ceiling")
    exe = os.path.join(ROOT, "target", "release", "examples", "inflate_ceiling")
    best, line = None, ""
    for _ in range(runs):
        line = subprocess.run([exe, stream], check=True, capture_output=True, text=True).stdout.strip()
        secs = float(re.search(r"in ([0-9.]+) s", line).group(1))
        best = min(best or secs, secs)
    inflated = int(re.search(r"(\d+) bytes inflated", line).group(1))
    print()
    print("all-core inflate ceiling: %s (best %.3f s)" % (line.split(" in ")[0], best))
    print(
        "vdconv streamOptimized best run: %.3f s = %.2f GB/s of inflated grains, %.0f%% of the ceiling (%.2f GB/s)"
        % (vdconv_best, inflated / vdconv_best / 1e9, 100 * best / vdconv_best, inflated / best / 1e9)
    )


def write_floor(flat_vmdk, out_dir, bests, runs):
    """The least time any tool can take to make the fixed VHD of the flat disk here
    (examples/write_floor: the flat file's data ranges written from memory into a new
    file on the output file system, nothing read), and both tools' best runs against it."""
    sh("cargo", "build", "--release", "-q", "--example", "write_floor")
    exe = os.path.join(ROOT, "target", "release", "examples", "write_floor")
    extent = os.path.join(os.path.dirname(flat_vmdk), "flat-flat.vmdk")
    out = os.path.join(out_dir, "floor.vhd")
    best, best_two, line = None, None, ""
    for _ in range(runs):
        text = subprocess.run([exe, extent, out], check=True, capture_output=True, text=True).stdout
        line = text.splitlines()[0]
        secs = float(re.search(r"written in ([0-9.]+) s", line).group(1))
        two = float(re.search(r"two threads into one file: ([0-9.]+) s", text).group(1))
        best, best_two = min(best or secs, secs), min(best_two or two, two)
    vb, qb = bests
    print()
    print("output write floor: %s (best %.3f s; from two threads into one file, best %.3f s)" % (line.split(" written in ")[0], best, best_two))
    print(
        "monolithicFlat -> fixed VHD best runs: vdconv %.3f s = %.2fx the floor, qemu-img %.3f s = %.2fx;"
        " a tool that only wrote would score %.2f against qemu-img"
        % (vb, vb / best, qb, qb / best, best / qb)
    )


if __name__ == "__main__":
    try:
        main()
    finally:
        shutil.rmtree(OUT_DIR, ignore_errors=True)

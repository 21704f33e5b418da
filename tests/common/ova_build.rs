//! Building OVA and OVF packages the way VMware's tools lay them out, with real tools:
//! streamOptimized disks from qemu-img, archives from GNU tar, digests from coreutils,
//! gzip and split for compressed and chunked files. The descriptor is written from a
//! template modelled on a VMware export (ovftool, vmx-10; OVF.md 7.7).
#![allow(dead_code)]

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::common::{have, qemu_vmdk, run_ok};

/// True when every tool the OVA tests use is there (a missing one fails, naming
/// the Debian package to install).
pub fn tools() -> bool {
    have("qemu-img", "the Debian package qemu-utils")
        & have("tar", "the Debian package tar (GNU tar)")
        & have("gzip", "the Debian package gzip")
        & have("split", "the Debian package coreutils")
        & have("sha1sum", "the Debian package coreutils")
        & have("sha256sum", "the Debian package coreutils")
        & have("cat", "the Debian package coreutils")
}

/// A raw disk of `mib` MiB: grains of pseudo-random bytes and of zeros, by `seed`.
pub fn raw_disk(path: &Path, mib: u64, seed: u64) {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut data = vec![0u8; (mib << 20) as usize];
    for (i, grain) in data.chunks_mut(64 << 10).enumerate() {
        if (i as u64 + seed) % 3 == 0 {
            continue;
        }
        for b in grain.iter_mut() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            *b = state as u8;
        }
    }
    fs::write(path, data).unwrap();
}

/// A streamOptimized VMDK named `name` in `dir`, of `mib` MiB, made by qemu-img.
pub fn stream_vmdk(dir: &Path, name: &str, mib: u64, seed: u64) -> PathBuf {
    let raw = dir.join(format!("{name}.raw"));
    raw_disk(&raw, mib, seed);
    let vmdk = dir.join(name);
    qemu_vmdk(&raw, &vmdk, "subformat=streamOptimized");
    fs::remove_file(&raw).unwrap();
    vmdk
}

/// `gzip -n -c src > dst`.
pub fn gzip(src: &Path, dst: &Path) {
    let out = File::create(dst).unwrap();
    let status = Command::new("gzip")
        .args(["-n", "-c"])
        .arg(src)
        .stdout(out)
        .status()
        .expect("run gzip");
    assert!(status.success(), "gzip failed");
}

/// Splits `dir/name` into `dir/name.000000000`, … of `chunk` bytes (`split -b N -d -a 9`,
/// VMware's chunk names), removes the original, and returns the chunk names in order.
pub fn split_chunks(dir: &Path, name: &str, chunk: u64) -> Vec<String> {
    let status = Command::new("split")
        .args(["-b", &chunk.to_string(), "-d", "-a", "9"])
        .arg(name)
        .arg(format!("{name}."))
        .current_dir(dir)
        .status()
        .expect("run split");
    assert!(status.success(), "split failed");
    fs::remove_file(dir.join(name)).unwrap();
    let mut chunks: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&format!("{name}.")) && n.len() == name.len() + 10)
        .collect();
    chunks.sort();
    chunks
}

/// Manifest lines for `names` (in `dir`) as VMware writes them, `SHA256(name)= hex`,
/// from sha1sum/sha256sum output (`hex  name`).
pub fn manifest(dir: &Path, names: &[&str], algorithm: &str) -> String {
    let tool = match algorithm {
        "SHA1" => "sha1sum",
        "SHA256" => "sha256sum",
        "SHA512" => "sha512sum",
        other => panic!("no tool for {other}"),
    };
    let out = Command::new(tool)
        .args(names)
        .current_dir(dir)
        .output()
        .expect("run sha*sum");
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let (hex, name) = l.split_once("  ").unwrap();
            format!("{algorithm}({name})= {hex}\n")
        })
        .collect()
}

/// `tar --format=FORMAT -cf out -C dir names…`, owner and group 0 as ova-compose writes.
pub fn tar(dir: &Path, out: &Path, format: &str, names: &[&str]) {
    let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![
        &"--format",
        &format,
        &"--owner=0",
        &"--group=0",
        &"--numeric-owner",
        &"-cf",
        &out,
        &"-C",
        &dir,
    ];
    for n in names {
        args.push(n);
    }
    run_ok("tar", &args);
}

/// `cat path` with its output piped: the archive as a pipe, no seeking possible.
pub fn cat_pipe(path: &Path) -> std::process::Child {
    Command::new("cat")
        .arg(path)
        .stdout(Stdio::piped())
        .spawn()
        .expect("run cat")
}

/// One disk of a VM template.
pub struct DiskSpec {
    pub file_id: String,
    pub disk_id: String,
    pub href: String,
    /// ovf:size: bytes stored (compressed size, total of chunks).
    pub size: u64,
    pub capacity_mib: u64,
    pub populated: u64,
    pub compression: Option<&'static str>,
    pub chunk_size: Option<u64>,
    /// InstanceID of the controller: "3" SCSI lsilogicsas, "5" IDE 0, "6" SATA.
    pub parent: &'static str,
    pub unit: u32,
}

/// The VM of a template.
pub struct VmSpec {
    pub name: String,
    /// `efi`, `bios`, or no firmware key.
    pub firmware: Option<&'static str>,
    pub secure_boot: Option<bool>,
    pub disks: Vec<DiskSpec>,
}

/// The descriptor of a VMware export (modelled on one ovftool wrote for a vmx-10 VM):
/// References, DiskSection, NetworkSection, and a VirtualSystem with its OS, CPUs,
/// memory, a SAS controller, two IDE controllers, a SATA controller, video, VMCI, a CD
/// on IDE, the disks, an E1000 NIC and a block of vmw:Config.
pub fn ovf_xml(vm: &VmSpec) -> String {
    let mut refs = String::new();
    let mut disks = String::new();
    let mut drives = String::new();
    for (i, d) in vm.disks.iter().enumerate() {
        let compression = d
            .compression
            .map(|c| format!(" ovf:compression=\"{c}\""))
            .unwrap_or_default();
        let chunk = d
            .chunk_size
            .map(|c| format!(" ovf:chunkSize=\"{c}\""))
            .unwrap_or_default();
        refs.push_str(&format!(
            "    <File ovf:href=\"{}\" ovf:id=\"{}\" ovf:size=\"{}\"{compression}{chunk}/>\n",
            d.href, d.file_id, d.size
        ));
        disks.push_str(&format!(
            "    <Disk ovf:capacity=\"{}\" ovf:capacityAllocationUnits=\"byte * 2^20\" ovf:diskId=\"{}\" ovf:fileRef=\"{}\" ovf:format=\"http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized\" ovf:populatedSize=\"{}\"/>\n",
            d.capacity_mib, d.disk_id, d.file_id, d.populated
        ));
        drives.push_str(&format!(
            r#"      <Item>
        <rasd:AddressOnParent>{unit}</rasd:AddressOnParent>
        <rasd:ElementName>Hard disk {n}</rasd:ElementName>
        <rasd:HostResource>ovf:/disk/{disk}</rasd:HostResource>
        <rasd:InstanceID>{id}</rasd:InstanceID>
        <rasd:Parent>{parent}</rasd:Parent>
        <rasd:ResourceType>17</rasd:ResourceType>
        <vmw:Config ovf:required="false" vmw:key="backing.writeThrough" vmw:value="false"/>
      </Item>
"#,
            unit = d.unit,
            n = i + 1,
            disk = d.disk_id,
            id = 10 + i,
            parent = d.parent,
        ));
    }
    let mut config = String::from(
        "      <vmw:Config ovf:required=\"false\" vmw:key=\"cpuHotAddEnabled\" vmw:value=\"false\"/>\n",
    );
    if let Some(f) = vm.firmware {
        config.push_str(&format!(
            "      <vmw:Config ovf:required=\"false\" vmw:key=\"firmware\" vmw:value=\"{f}\"/>\n"
        ));
    }
    if let Some(s) = vm.secure_boot {
        config.push_str(&format!(
            "      <vmw:Config ovf:required=\"false\" vmw:key=\"bootOptions.efiSecureBootEnabled\" vmw:value=\"{s}\"/>\n"
        ));
    }
    config.push_str(
        "      <vmw:Config ovf:required=\"false\" vmw:key=\"powerOpInfo.powerOffType\" vmw:value=\"soft\"/>\n      <vmw:Config ovf:required=\"false\" vmw:key=\"tools.syncTimeWithHost\" vmw:value=\"false\"/>\n",
    );
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<!--Generated by VMware ovftool 4.1.0 (build-2459827), UTC time: 2015-03-13T10:52:49.174734Z-->
<Envelope vmw:buildId="build-1750787" xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:cim="http://schemas.dmtf.org/wbem/wscim/1/common" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1" xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData" xmlns:vmw="http://www.vmware.com/schema/ovf" xmlns:vssd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <References>
{refs}  </References>
  <DiskSection>
    <Info>Virtual disk information</Info>
{disks}  </DiskSection>
  <NetworkSection>
    <Info>The list of logical networks</Info>
    <Network ovf:name="VM Network">
      <Description>The VM Network network</Description>
    </Network>
  </NetworkSection>
  <VirtualSystem ovf:id="{name}">
    <Info>A virtual machine</Info>
    <Name>{name}</Name>
    <OperatingSystemSection ovf:id="103" vmw:osType="windows7Server64Guest">
      <Info>The kind of installed guest operating system</Info>
      <Description>Microsoft Windows Server 2008 R2 (64-bit)</Description>
    </OperatingSystemSection>
    <VirtualHardwareSection>
      <Info>Virtual hardware requirements</Info>
      <System>
        <vssd:ElementName>Virtual Hardware Family</vssd:ElementName>
        <vssd:InstanceID>0</vssd:InstanceID>
        <vssd:VirtualSystemIdentifier>{name}</vssd:VirtualSystemIdentifier>
        <vssd:VirtualSystemType>vmx-10</vssd:VirtualSystemType>
      </System>
      <Item>
        <rasd:AllocationUnits>hertz * 10^6</rasd:AllocationUnits>
        <rasd:Description>Number of Virtual CPUs</rasd:Description>
        <rasd:ElementName>2 virtual CPU(s)</rasd:ElementName>
        <rasd:InstanceID>1</rasd:InstanceID>
        <rasd:ResourceType>3</rasd:ResourceType>
        <rasd:VirtualQuantity>2</rasd:VirtualQuantity>
        <vmw:CoresPerSocket ovf:required="false">2</vmw:CoresPerSocket>
      </Item>
      <Item>
        <rasd:AllocationUnits>byte * 2^20</rasd:AllocationUnits>
        <rasd:Description>Memory Size</rasd:Description>
        <rasd:ElementName>4096MB of memory</rasd:ElementName>
        <rasd:InstanceID>2</rasd:InstanceID>
        <rasd:ResourceType>4</rasd:ResourceType>
        <rasd:VirtualQuantity>4096</rasd:VirtualQuantity>
      </Item>
      <Item>
        <rasd:Address>0</rasd:Address>
        <rasd:Description>SCSI Controller</rasd:Description>
        <rasd:ElementName>SCSI controller 0</rasd:ElementName>
        <rasd:InstanceID>3</rasd:InstanceID>
        <rasd:ResourceSubType>lsilogicsas</rasd:ResourceSubType>
        <rasd:ResourceType>6</rasd:ResourceType>
      </Item>
      <Item>
        <rasd:Address>1</rasd:Address>
        <rasd:Description>IDE Controller</rasd:Description>
        <rasd:ElementName>IDE 1</rasd:ElementName>
        <rasd:InstanceID>4</rasd:InstanceID>
        <rasd:ResourceType>5</rasd:ResourceType>
      </Item>
      <Item>
        <rasd:Address>0</rasd:Address>
        <rasd:Description>IDE Controller</rasd:Description>
        <rasd:ElementName>IDE 0</rasd:ElementName>
        <rasd:InstanceID>5</rasd:InstanceID>
        <rasd:ResourceType>5</rasd:ResourceType>
      </Item>
      <Item>
        <rasd:Address>0</rasd:Address>
        <rasd:Description>SATA Controller</rasd:Description>
        <rasd:ElementName>SATA controller 0</rasd:ElementName>
        <rasd:InstanceID>6</rasd:InstanceID>
        <rasd:ResourceSubType>vmware.sata.ahci</rasd:ResourceSubType>
        <rasd:ResourceType>20</rasd:ResourceType>
      </Item>
      <Item ovf:required="false">
        <rasd:AutomaticAllocation>false</rasd:AutomaticAllocation>
        <rasd:ElementName>Video card</rasd:ElementName>
        <rasd:InstanceID>7</rasd:InstanceID>
        <rasd:ResourceType>24</rasd:ResourceType>
        <vmw:Config ovf:required="false" vmw:key="videoRamSizeInKB" vmw:value="4096"/>
      </Item>
      <Item ovf:required="false">
        <rasd:AutomaticAllocation>false</rasd:AutomaticAllocation>
        <rasd:ElementName>VMCI device</rasd:ElementName>
        <rasd:InstanceID>8</rasd:InstanceID>
        <rasd:ResourceSubType>vmware.vmci</rasd:ResourceSubType>
        <rasd:ResourceType>1</rasd:ResourceType>
      </Item>
      <Item ovf:required="false">
        <rasd:AddressOnParent>0</rasd:AddressOnParent>
        <rasd:AutomaticAllocation>false</rasd:AutomaticAllocation>
        <rasd:ElementName>CD/DVD drive 1</rasd:ElementName>
        <rasd:InstanceID>9</rasd:InstanceID>
        <rasd:Parent>4</rasd:Parent>
        <rasd:ResourceSubType>vmware.cdrom.atapi</rasd:ResourceSubType>
        <rasd:ResourceType>15</rasd:ResourceType>
      </Item>
{drives}      <Item>
        <rasd:Address>00:50:56:aa:bb:cc</rasd:Address>
        <rasd:AddressOnParent>7</rasd:AddressOnParent>
        <rasd:AutomaticAllocation>true</rasd:AutomaticAllocation>
        <rasd:Connection>VM Network</rasd:Connection>
        <rasd:Description>E1000 ethernet adapter on "VM Network"</rasd:Description>
        <rasd:ElementName>Network adapter 1</rasd:ElementName>
        <rasd:InstanceID>20</rasd:InstanceID>
        <rasd:ResourceSubType>E1000</rasd:ResourceSubType>
        <rasd:ResourceType>10</rasd:ResourceType>
        <vmw:Config ovf:required="false" vmw:key="wakeOnLanEnabled" vmw:value="false"/>
      </Item>
{config}    </VirtualHardwareSection>
  </VirtualSystem>
</Envelope>
"#,
        name = vm.name,
    )
}

/// Writes `vm`'s descriptor and a manifest covering it and `files` into `dir`, and
/// returns the order ovftool packs them in: the .ovf, the .mf, then the files.
pub fn descriptor_and_manifest(
    dir: &Path,
    vm: &VmSpec,
    files: Vec<String>,
    algorithm: &str,
) -> Vec<String> {
    let ovf = format!("{}.ovf", vm.name);
    fs::write(dir.join(&ovf), ovf_xml(vm)).unwrap();
    let mut covered = vec![ovf.clone()];
    covered.extend(files.iter().cloned());
    let names: Vec<&str> = covered.iter().map(String::as_str).collect();
    let mf = format!("{}.mf", vm.name);
    fs::write(dir.join(&mf), manifest(dir, &names, algorithm)).unwrap();
    let mut order = vec![ovf, mf];
    order.extend(files);
    order
}

//! The reports as people read them: one fact a line.

use std::fmt::Write as _;

use vdconv::check::CheckReport;
use vdconv::compare::CompareReport;
use vdconv::info::InfoReport;
use vdconv::inspect::InspectDocument;
use vdconv::target::Target;

pub fn info(report: &InfoReport) -> String {
    let info = &report.image;
    let mut out = String::new();
    let _ = writeln!(out, "file: {}", info.file);
    let _ = writeln!(out, "format: {} ({})", info.format, info.layout);
    let _ = writeln!(
        out,
        "virtual size: {} bytes ({})",
        info.virtual_size,
        human(info.virtual_size)
    );
    let _ = writeln!(
        out,
        "allocated: {} bytes ({})",
        info.allocated_bytes,
        human(info.allocated_bytes)
    );
    if let Some(v) = &info.vmdk {
        if let Some(a) = &v.adapter_type {
            let _ = writeln!(out, "adapter type: {a}");
        }
        if let Some(a) = &v.adapter_hyperv {
            let _ = writeln!(out, "  on Hyper-V: {a}");
        }
        if let Some(h) = &v.hardware_version {
            let _ = writeln!(out, "virtual hardware version: {h}");
        }
        if let Some(g) = &v.geometry {
            let _ = writeln!(out, "geometry: {}/{}/{}", g.cylinders, g.heads, g.sectors);
        }
        if let Some(g) = v.grain_size {
            let _ = writeln!(
                out,
                "grain size: {g} bytes{}",
                if v.compressed { ", compressed" } else { "" }
            );
        }
    }
    if let Some(v) = &info.vhd {
        let _ = writeln!(
            out,
            "creator: {} {} on {}; geometry {}/{}/{}",
            v.creator_app.trim(),
            v.creator_version,
            v.creator_host_os.trim(),
            v.geometry.cylinders,
            v.geometry.heads,
            v.geometry.sectors
        );
        if let Some(b) = v.block_size {
            let _ = writeln!(out, "block size: {b} bytes");
        }
    }
    if let Some(v) = &info.vhdx {
        let _ = writeln!(
            out,
            "block size: {} bytes; sectors: logical {}, physical {}",
            v.block_size, v.logical_sector_size, v.physical_sector_size
        );
    }
    let _ = writeln!(out, "extents:");
    for e in &info.extents {
        let _ = writeln!(
            out,
            "  {} {} at {} size {}{}",
            e.access,
            e.kind,
            e.start,
            e.size,
            e.file
                .as_ref()
                .map(|f| format!(" file {f} offset {}", e.file_offset))
                .unwrap_or_default()
        );
    }
    if report.chain.len() > 1 {
        let _ = writeln!(out, "chain: {} links, top first", report.chain.len());
        for (i, l) in report.chain.iter().enumerate() {
            let ids = match (&l.id, &l.parent_id) {
                (Some(id), Some(p)) => {
                    format!(", {} {id}, parent's {p}", l.id_kind.unwrap_or("id"))
                }
                (Some(id), None) => format!(", {} {id}", l.id_kind.unwrap_or("id")),
                (None, Some(p)) => format!(", parent's {p}"),
                (None, None) => String::new(),
            };
            let _ = writeln!(
                out,
                "  {i}: {} ({} {}{ids}), {} bytes allocated",
                l.file, l.format, l.layout, l.allocated_bytes
            );
        }
    }
    if let Some(t) = &report.partitions {
        let _ = writeln!(
            out,
            "partition table: {}{}",
            t.scheme.name(),
            if t.bootable { ", bootable" } else { "" }
        );
        for p in &t.partitions {
            let _ = writeln!(
                out,
                "  {} {} ({}) at {} size {}{}",
                p.number,
                p.type_name,
                p.type_id,
                p.start,
                p.size,
                if p.bootable { " active" } else { "" }
            );
        }
        for problem in &t.problems {
            let _ = writeln!(out, "  problem: {problem}");
        }
    }
    out
}

pub fn check(report: &CheckReport) -> String {
    let mut out = String::new();
    if report.findings.is_empty() {
        let _ = writeln!(
            out,
            "{}: clean ({} {} rules)",
            report.file, report.format, report.rules
        );
        return out;
    }
    for f in &report.findings {
        let at = f
            .offset
            .map(|o| format!(" at offset {o}"))
            .unwrap_or_default();
        let file = if f.file == report.file {
            String::new()
        } else {
            format!("{}: ", f.file)
        };
        let _ = writeln!(
            out,
            "{}: {} ({}){at}: {file}{}",
            report.file,
            f.rule.id,
            f.severity.name(),
            f.message
        );
    }
    let must = report
        .findings
        .iter()
        .filter(|f| f.severity == vdconv::rules::Severity::Must)
        .count();
    let _ = writeln!(
        out,
        "{}: {} finding(s), {must} breaking a must rule{}",
        report.file,
        report.findings.len(),
        if report.clean { "; clean" } else { "" }
    );
    out
}

pub fn compare(report: &CompareReport) -> String {
    if report.identical && report.size_a == report.size_b {
        return format!("identical ({} bytes)\n", report.size_a);
    }
    if report.identical {
        return format!(
            "identical: sizes {} and {} bytes differ only by a tail of zeros\n",
            report.size_a, report.size_b
        );
    }
    let at = match report.first_difference {
        Some(o) => format!("first difference at byte offset {o}"),
        None if report.zero_tail => {
            "contents equal; the sizes differ by a tail of zeros (--strict)".to_string()
        }
        None => "contents equal up to the smaller size".to_string(),
    };
    format!(
        "different: {at}; sizes {} and {} bytes\n",
        report.size_a, report.size_b
    )
}

/// The guest report grouped by severity (on `target`, else by the highest), then the
/// verdict the exit code gives.
pub fn inspect(doc: &InspectDocument, target: Option<Target>) -> String {
    let mut out = format!(
        "{}: {} ({}), partition table: {}\n",
        doc.image,
        human(doc.virtual_size),
        doc.virtual_size,
        doc.scheme
    );
    out.push_str(&doc.report.render_text(target));
    for p in &doc.problems {
        let _ = writeln!(out, "problem: {p}");
    }
    let names = |ts: &mut dyn Iterator<Item = Target>| -> String {
        ts.map(Target::name).collect::<Vec<_>>().join(", ")
    };
    let _ = match target {
        Some(t) if doc.ready => writeln!(out, "\nready for {}", t.name()),
        Some(t) => writeln!(
            out,
            "\nNOT ready for {}: {} blocking finding(s)",
            t.name(),
            doc.blocking(t).count()
        ),
        None if doc.ready_for.len() == 3 => writeln!(out, "\nready for every target"),
        None if doc.ready => writeln!(
            out,
            "\nready for {}; blocked on {}",
            names(&mut doc.ready_for.iter().copied()),
            names(
                &mut vdconv::inspect::TARGETS
                    .into_iter()
                    .filter(|t| !doc.ready_for.contains(t))
            )
        ),
        None => writeln!(out, "\nNOT ready for any target"),
    };
    out
}

fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

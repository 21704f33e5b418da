//! Network configurations that will not match the new NIC (GUEST.md 2.3): pinned to a
//! MAC address or to a VMware-era interface name, or a static IPv4 address.

use super::super::view::View;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetIssue {
    MacPinned,
    InterfaceName,
    StaticIpv4,
}

/// One problem in one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetFinding {
    pub issue: NetIssue,
    pub path: String,
    pub line: Option<usize>,
    pub detail: String,
}

/// Predictable names derived from PCI or firmware (ens192, ens160, eno16780032, enp3s0,
/// `enx<mac>`): VMBus NICs have no PCI slot, so on Hyper-V the NIC gets another name (eth0 on
/// Azure's images) (GUEST.md 2.3; exact name per distro unconfirmed).
pub fn is_hardware_bound_name(name: &str) -> bool {
    let name = name.trim_matches(|c| c == '"' || c == '\'');
    let Some(rest) = name.strip_prefix("en") else {
        return false;
    };
    matches!(rest.chars().next(), Some('s' | 'o' | 'p' | 'x'))
        && rest
            .chars()
            .nth(1)
            .is_some_and(|c| c.is_ascii_alphanumeric())
}

fn is_ipv4_address(s: &str) -> bool {
    let addr = s.trim_matches(|c: char| c == '"' || c == '\'' || c == '[' || c == ']' || c == ',');
    let ip = addr.split('/').next().unwrap_or("");
    let octets: Vec<&str> = ip.split('.').collect();
    octets.len() == 4 && octets.iter().all(|o| o.parse::<u8>().is_ok()) && !ip.starts_with("127.")
}

pub fn scan(view: &View<'_>) -> Vec<NetFinding> {
    let mut out = Vec::new();
    for dir in ["/etc/netplan", "/run/netplan", "/lib/netplan"] {
        for (path, text) in view.texts_in(dir, ".yaml") {
            netplan(&path, &text, &mut out);
        }
    }
    for (path, text) in view.texts_in("/etc/sysconfig/network-scripts", "") {
        let file = path.rsplit('/').next().unwrap_or("");
        if file.starts_with("ifcfg-") && file != "ifcfg-lo" && !file.ends_with(".bak") {
            ifcfg(&path, &text, &mut out);
        }
    }
    for dir in [
        "/etc/NetworkManager/system-connections",
        "/usr/lib/NetworkManager/system-connections",
        "/run/NetworkManager/system-connections",
    ] {
        for (path, text) in view.texts_in(dir, ".nmconnection") {
            keyfile(&path, &text, &mut out);
        }
    }
    if let Some(text) = view.text("/etc/network/interfaces") {
        ifupdown("/etc/network/interfaces", &text, &mut out);
    }
    for (path, text) in view.texts_in("/etc/network/interfaces.d", "") {
        ifupdown(&path, &text, &mut out);
    }
    for (path, text) in view.texts_in("/etc/systemd/network", "") {
        if path.ends_with(".link") || path.ends_with(".network") {
            networkd(&path, &text, &mut out);
        }
    }
    let udev = "/etc/udev/rules.d/70-persistent-net.rules";
    if let Some(text) = view.text(udev) {
        for (i, line) in text.lines().enumerate() {
            if !line.trim_start().starts_with('#')
                && line.contains("ATTR{address}")
                && line.contains("NAME=")
            {
                out.push(NetFinding {
                    issue: NetIssue::MacPinned,
                    path: udev.into(),
                    line: Some(i + 1),
                    detail: "a udev rule names an interface by the old NIC's MAC address".into(),
                });
            }
        }
    }
    out
}

/// YAML flattened just enough: each `key: value` or `- item` line with the keys above it.
fn flatten_yaml(text: &str) -> Vec<(usize, Vec<String>, String)> {
    let mut stack: Vec<(usize, String)> = Vec::new();
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate().take(10_000) {
        let content = raw.split(" #").next().unwrap_or("");
        if content.trim().is_empty() || content.trim_start().starts_with('#') {
            continue;
        }
        let indent = content.len() - content.trim_start().len();
        let line = content.trim();
        if let Some(item) = line.strip_prefix("- ") {
            // Items belong to the key at or above their indent (both styles are YAML).
            while stack.last().is_some_and(|(d, _)| *d > indent) {
                stack.pop();
            }
            let path = stack.iter().map(|(_, k)| k.clone()).collect();
            out.push((i + 1, path, item.trim().to_string()));
            continue;
        }
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        while stack.last().is_some_and(|(d, _)| *d >= indent) {
            stack.pop();
        }
        let key = key
            .trim()
            .trim_matches(|c| c == '"' || c == '\'')
            .to_string();
        stack.push((indent, key));
        let value = value.trim();
        if !value.is_empty() {
            let path = stack.iter().map(|(_, k)| k.clone()).collect();
            out.push((i + 1, path, value.to_string()));
        }
    }
    out
}

fn netplan(path: &str, text: &str, out: &mut Vec<NetFinding>) {
    let mut named: Vec<String> = Vec::new();
    for (line, keys, value) in flatten_yaml(text) {
        let Some(pos) = keys.iter().position(|k| k == "ethernets") else {
            continue;
        };
        let Some(iface) = keys.get(pos + 1) else {
            continue;
        };
        let rest: Vec<&str> = keys.iter().skip(pos + 2).map(String::as_str).collect();
        let mut push = |issue, detail: String| {
            out.push(NetFinding {
                issue,
                path: path.to_string(),
                line: Some(line),
                detail,
            })
        };
        match rest.as_slice() {
            ["match", "macaddress"] => push(
                NetIssue::MacPinned,
                format!("{iface} matches MAC address {value}"),
            ),
            ["match", "name"] if is_hardware_bound_name(&value) => push(
                NetIssue::InterfaceName,
                format!("{iface} matches interface name {value}"),
            ),
            ["set-name"] if is_hardware_bound_name(&value) => push(
                NetIssue::InterfaceName,
                format!("{iface} is renamed to {value}"),
            ),
            ["addresses"] => {
                let static_v4 = value.split(',').any(is_ipv4_address);
                if static_v4 {
                    push(
                        NetIssue::StaticIpv4,
                        format!("{iface} has a static IPv4 address {value}"),
                    );
                }
            }
            _ => {}
        }
        if is_hardware_bound_name(iface)
            && !named.contains(iface)
            && !keys.iter().any(|k| k == "match")
        {
            named.push(iface.clone());
            push(
                NetIssue::InterfaceName,
                format!("configuration for interface {iface}"),
            );
        }
    }
    // An interface key with a match: block is renamed by the match, not named; drop those.
    let matched: Vec<String> = flatten_yaml(text)
        .into_iter()
        .filter_map(|(_, keys, _)| {
            let pos = keys.iter().position(|k| k == "ethernets")?;
            (keys.get(pos + 2).map(String::as_str) == Some("match"))
                .then(|| keys.get(pos + 1).cloned())?
        })
        .collect();
    out.retain(|f| {
        !(f.path == path
            && f.issue == NetIssue::InterfaceName
            && f.detail.starts_with("configuration for interface ")
            && matched.iter().any(|m| f.detail.ends_with(m.as_str())))
    });
}

fn kv_lines(text: &str) -> impl Iterator<Item = (usize, String, String)> + '_ {
    text.lines().enumerate().take(10_000).filter_map(|(i, l)| {
        let l = l.trim();
        if l.starts_with('#') || l.starts_with(';') {
            return None;
        }
        let (k, v) = l.split_once('=')?;
        Some((
            i + 1,
            k.trim().to_string(),
            v.trim().trim_matches(|c| c == '"' || c == '\'').to_string(),
        ))
    })
}

fn ifcfg(path: &str, text: &str, out: &mut Vec<NetFinding>) {
    let mut bootproto = String::new();
    let mut ipaddr: Option<(usize, String)> = None;
    let mut device = path
        .rsplit('/')
        .next()
        .and_then(|f| f.strip_prefix("ifcfg-"))
        .unwrap_or("")
        .to_string();
    let mut device_line = None;
    for (line, k, v) in kv_lines(text) {
        let push = |out: &mut Vec<NetFinding>, issue, detail: String| {
            out.push(NetFinding {
                issue,
                path: path.to_string(),
                line: Some(line),
                detail,
            })
        };
        match k.as_str() {
            "HWADDR" | "MACADDR" if !v.is_empty() => {
                push(out, NetIssue::MacPinned, format!("{k}={v}"))
            }
            "DEVICE" => {
                device = v.clone();
                device_line = Some(line);
            }
            "BOOTPROTO" => bootproto = v.to_ascii_lowercase(),
            "IPADDR" | "IPADDR0" | "IPADDR1" if is_ipv4_address(&v) => ipaddr = Some((line, v)),
            _ => {}
        }
    }
    if is_hardware_bound_name(&device) {
        out.push(NetFinding {
            issue: NetIssue::InterfaceName,
            path: path.into(),
            line: device_line,
            detail: format!("configuration for interface {device}"),
        });
    }
    if let Some((line, ip)) = ipaddr
        && !bootproto.contains("dhcp")
    {
        out.push(NetFinding {
            issue: NetIssue::StaticIpv4,
            path: path.into(),
            line: Some(line),
            detail: format!("static IPv4 address {ip} (BOOTPROTO={bootproto})"),
        });
    }
}

/// INI sections with their key/value lines.
fn ini(text: &str) -> Vec<(usize, String, String, String)> {
    let mut section = String::new();
    let mut out = Vec::new();
    for (i, l) in text.lines().enumerate().take(10_000) {
        let l = l.trim();
        if let Some(s) = l.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            section = s.to_string();
        } else if !l.starts_with('#') && !l.starts_with(';') {
            if let Some((k, v)) = l.split_once('=') {
                out.push((
                    i + 1,
                    section.clone(),
                    k.trim().to_string(),
                    v.trim().to_string(),
                ));
            }
        }
    }
    out
}

fn keyfile(path: &str, text: &str, out: &mut Vec<NetFinding>) {
    let entries = ini(text);
    let get = |s: &str, k: &str| entries.iter().find(|e| e.1 == s && e.2 == k);
    if get("connection", "type").is_some_and(|e| e.3 == "loopback") {
        return;
    }
    let mut push = |issue, line, detail: String| {
        out.push(NetFinding {
            issue,
            path: path.into(),
            line: Some(line),
            detail,
        })
    };
    if let Some(e) = get("ethernet", "mac-address").or_else(|| get("802-3-ethernet", "mac-address"))
    {
        push(NetIssue::MacPinned, e.0, format!("mac-address={}", e.3));
    }
    if let Some(e) = get("connection", "interface-name").filter(|e| is_hardware_bound_name(&e.3)) {
        push(
            NetIssue::InterfaceName,
            e.0,
            format!("configuration for interface {}", e.3),
        );
    }
    let manual = get("ipv4", "method").is_some_and(|e| e.3 == "manual");
    if manual {
        let addr = entries.iter().find(|e| {
            e.1 == "ipv4"
                && (e.2.starts_with("address") || e.2 == "addresses")
                && is_ipv4_address(e.3.split(',').next().unwrap_or(""))
        });
        if let Some(e) = addr {
            push(
                NetIssue::StaticIpv4,
                e.0,
                format!("static IPv4 address {} (method=manual)", e.3),
            );
        }
    }
}

fn ifupdown(path: &str, text: &str, out: &mut Vec<NetFinding>) {
    let mut named: Vec<String> = Vec::new();
    for (i, l) in text.lines().enumerate().take(10_000) {
        let words: Vec<&str> = l.split_whitespace().collect();
        let mut push = |issue, detail: String| {
            out.push(NetFinding {
                issue,
                path: path.into(),
                line: Some(i + 1),
                detail,
            })
        };
        match words.as_slice() {
            ["iface", name, "inet", "static", ..] if *name != "lo" => {
                push(
                    NetIssue::StaticIpv4,
                    format!("{name} is configured with a static IPv4 address"),
                );
                if is_hardware_bound_name(name) && !named.iter().any(|n| n == name) {
                    named.push(name.to_string());
                    push(
                        NetIssue::InterfaceName,
                        format!("configuration for interface {name}"),
                    );
                }
            }
            ["auto" | "allow-hotplug" | "iface", name, ..]
                if is_hardware_bound_name(name) && !named.iter().any(|n| n == name) =>
            {
                named.push(name.to_string());
                push(
                    NetIssue::InterfaceName,
                    format!("configuration for interface {name}"),
                );
            }
            _ => {}
        }
    }
}

fn networkd(path: &str, text: &str, out: &mut Vec<NetFinding>) {
    let entries = ini(text);
    let dhcp = entries.iter().any(|e| {
        e.1 == "Network"
            && e.2 == "DHCP"
            && matches!(e.3.as_str(), "yes" | "true" | "ipv4" | "both")
    });
    for (line, section, key, value) in entries.iter().cloned() {
        let mut push = |issue, detail: String| {
            out.push(NetFinding {
                issue,
                path: path.into(),
                line: Some(line),
                detail,
            })
        };
        match (section.as_str(), key.as_str()) {
            ("Match", "MACAddress" | "PermanentMACAddress") => {
                push(NetIssue::MacPinned, format!("{key}={value}"))
            }
            ("Match", "Name" | "OriginalName") | ("Link", "Name")
                if value.split_whitespace().any(is_hardware_bound_name) =>
            {
                push(NetIssue::InterfaceName, format!("{key}={value}"))
            }
            ("Network" | "Address", "Address") if is_ipv4_address(&value) && !dhcp => {
                push(NetIssue::StaticIpv4, format!("static IPv4 address {value}"))
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netplan_forms() {
        let mut out = Vec::new();
        netplan(
            "/etc/netplan/a.yaml",
            "network:\n  version: 2\n  ethernets:\n    ens192:\n      dhcp4: false\n      addresses: [192.168.1.5/24]\n",
            &mut out,
        );
        let issues: Vec<NetIssue> = out.iter().map(|f| f.issue).collect();
        assert!(
            issues.contains(&NetIssue::StaticIpv4) && issues.contains(&NetIssue::InterfaceName),
            "{out:?}"
        );
        let mut out = Vec::new();
        netplan(
            "/etc/netplan/b.yaml",
            "network:\n  ethernets:\n    nic0:\n      match:\n        macaddress: 00:50:56:aa:bb:cc\n      set-name: nic0\n      dhcp4: true\n",
            &mut out,
        );
        assert_eq!(
            out.iter().map(|f| f.issue).collect::<Vec<_>>(),
            [NetIssue::MacPinned],
            "{out:?}"
        );
        let mut out = Vec::new();
        netplan(
            "/etc/netplan/c.yaml",
            "network:\n  ethernets:\n    eth0:\n      dhcp4: true\n      addresses:\n        - 10.0.0.4/24\n",
            &mut out,
        );
        assert_eq!(
            out.iter().map(|f| f.issue).collect::<Vec<_>>(),
            [NetIssue::StaticIpv4],
            "{out:?}"
        );
        let mut out = Vec::new();
        netplan(
            "/etc/netplan/d.yaml",
            "network:\n  ethernets:\n    eth0:\n      dhcp4: true\n",
            &mut out,
        );
        assert!(out.is_empty());
    }

    #[test]
    fn names() {
        for n in [
            "ens192",
            "ens160",
            "eno16780032",
            "enp3s0",
            "enx005056aabbcc",
        ] {
            assert!(is_hardware_bound_name(n), "{n}");
        }
        for n in ["eth0", "lo", "en", "bond0"] {
            assert!(!is_hardware_bound_name(n), "{n}");
        }
    }
}

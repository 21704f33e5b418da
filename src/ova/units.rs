//! Quantities with DSP0004 programmatic units, as OVF writes them: `ovf:capacity="16"`
//! with `ovf:capacityAllocationUnits="byte * 2^30"`, memory as `byte * 2^20`. Parsed
//! strictly (a capacity decides how large a disk is), every step overflow-checked.

use crate::quote::excerpt;

/// A non-negative decimal integer (xs:long / xs:unsignedLong as OVF uses them): digits
/// only, surrounding whitespace allowed.
pub fn decimal(text: &str) -> Result<u64, String> {
    let t = text.trim();
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "{text} is not a non-negative decimal number",
            text = excerpt(text)
        ));
    }
    t.parse()
        .map_err(|_| format!("{text} does not fit 64 bits", text = excerpt(text)))
}

/// The multiplier of a byte unit: `byte`, then any number of `* 2^N`, `* 10^N` or
/// `* N` factors. Anything else (other base units, division, negative exponents) is
/// refused rather than guessed at.
pub fn byte_multiplier(units: &str) -> Result<u64, String> {
    let bad = |why: &str| format!("allocation units {units}: {why}", units = excerpt(units));
    let mut factors = units.split('*');
    let base = factors.next().unwrap_or("").trim();
    if !base.eq_ignore_ascii_case("byte") {
        return Err(bad("the base unit is not 'byte'"));
    }
    let mut multiplier: u64 = 1;
    for factor in factors {
        let factor = factor.trim();
        let value = match factor.split_once('^') {
            Some((base, exp)) => {
                let base = decimal(base).map_err(|e| bad(&e))?;
                if base != 2 && base != 10 {
                    return Err(bad("only powers of 2 and 10 are understood"));
                }
                let exp = u32::try_from(decimal(exp).map_err(|e| bad(&e))?)
                    .map_err(|_| bad("exponent too large"))?;
                base.checked_pow(exp)
                    .ok_or_else(|| bad("does not fit 64 bits"))?
            }
            None => decimal(factor).map_err(|e| bad(&e))?,
        };
        multiplier = multiplier
            .checked_mul(value)
            .ok_or_else(|| bad("does not fit 64 bits"))?;
    }
    if multiplier == 0 {
        return Err(bad("is zero"));
    }
    Ok(multiplier)
}

/// `value` in `units` (bytes when absent), in bytes.
pub fn bytes(value: &str, units: Option<&str>) -> Result<u64, String> {
    let value = decimal(value)?;
    let multiplier = match units {
        Some(u) => byte_multiplier(u)?,
        None => 1,
    };
    value
        .checked_mul(multiplier)
        .ok_or_else(|| "the size in bytes does not fit 64 bits".to_string())
}

/// Memory's AllocationUnits: the programmatic form, or the spelled-out names older
/// VMware exports used (`MegaBytes`). For `info` only, so a little more lenient.
pub fn memory_multiplier(units: &str) -> Result<u64, String> {
    match units.trim().to_ascii_lowercase().as_str() {
        "kilobytes" | "kb" => Ok(1 << 10),
        "megabytes" | "mb" => Ok(1 << 20),
        "gigabytes" | "gb" => Ok(1 << 30),
        _ => byte_multiplier(units),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programmatic_units() {
        assert_eq!(byte_multiplier("byte"), Ok(1));
        assert_eq!(byte_multiplier("byte * 2^30"), Ok(1 << 30));
        assert_eq!(byte_multiplier("byte*2^20"), Ok(1 << 20));
        assert_eq!(byte_multiplier("byte * 10^3 * 4"), Ok(4000));
        assert!(byte_multiplier("byte * 2^64").is_err());
        assert!(byte_multiplier("byte * 2^-3").is_err());
        assert!(byte_multiplier("bit * 2^3").is_err());
        assert!(byte_multiplier("byte / 2").is_err());
        assert!(byte_multiplier("byte * 3^2").is_err());
        assert!(byte_multiplier("byte * 0").is_err());
    }

    #[test]
    fn capacities() {
        assert_eq!(bytes("16", Some("byte * 2^30")), Ok(16 << 30));
        assert_eq!(bytes(" 1048576 ", None), Ok(1 << 20));
        assert!(bytes("-1", None).is_err());
        assert!(bytes("1e9", None).is_err());
        assert!(bytes("${disk.size}", None).is_err());
        assert!(bytes("17179869184", Some("byte * 2^40")).is_err());
        assert!(bytes("99999999999999999999", None).is_err());
    }
}

//! Zero detection, used wherever zero ranges are skipped or left as holes.

/// True when every byte is zero.
pub fn is_zero(data: &[u8]) -> bool {
    // Compare 16-byte words, then the unaligned ends.
    // SAFETY: every bit pattern is a valid u128.
    let (head, words, tail) = unsafe { data.align_to::<u128>() };
    head.iter().all(|&b| b == 0) && words.iter().all(|&w| w == 0) && tail.iter().all(|&b| b == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_detection_sees_every_byte() {
        let mut v = vec![0u8; 4099];
        assert!(is_zero(&v));
        for at in [0, 1, 15, 16, 2048, 4097, 4098] {
            v[at] = 1;
            assert!(!is_zero(&v[..]), "byte {at}");
            assert!(!is_zero(&v[1..]) || at == 0);
            v[at] = 0;
        }
    }
}

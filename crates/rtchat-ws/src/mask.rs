//! Client-to-server payload masking (RFC 6455 §5.3).
//!
//! Every frame a client sends is XOR-ed with a 4-byte key. Unmasking is on
//! the hot path of every received byte, so it works on 16 bytes at a time
//! (two `u64` lanes that LLVM turns into SIMD) instead of one byte per
//! iteration, and supports a starting offset so a payload that arrives in
//! several TCP reads can be unmasked piecewise, in place.

/// XORs `buf` with the masking `key`, as if `buf` started at payload offset 0.
///
/// Masking is an involution: applying it twice restores the input, so the same
/// function masks (client side, tests, benches) and unmasks (server side).
#[inline]
pub fn apply_mask(buf: &mut [u8], key: [u8; 4]) {
    apply_mask_offset(buf, key, 0);
}

/// XORs `buf` with `key`, where `buf[0]` is the byte at payload position
/// `offset`. Exists so a partially received payload can be unmasked as it
/// arrives (needed for fail-fast UTF-8 validation) without re-touching bytes.
#[inline]
pub fn apply_mask_offset(buf: &mut [u8], key: [u8; 4], offset: usize) {
    let r = offset & 3;
    // Key rotated so that index 0 of the rotated key applies to buf[0].
    let k = [key[r], key[(r + 1) & 3], key[(r + 2) & 3], key[(r + 3) & 3]];
    let k8 = [k[0], k[1], k[2], k[3], k[0], k[1], k[2], k[3]];
    let m = u64::from_ne_bytes(k8);

    let mut chunks = buf.chunks_exact_mut(16);
    for c in &mut chunks {
        let (a, b) = c.split_at_mut(8);
        xor8(a, m);
        xor8(b, m);
    }
    let rest = chunks.into_remainder();
    let mut chunks8 = rest.chunks_exact_mut(8);
    for c in &mut chunks8 {
        xor8(c, m);
    }
    // Remainder starts at a multiple of 8 from buf[0], so the key phase is 0.
    for (i, b) in chunks8.into_remainder().iter_mut().enumerate() {
        *b ^= k[i & 3];
    }
}

#[inline(always)]
fn xor8(c: &mut [u8], m: u64) {
    let mut w = [0u8; 8];
    w.copy_from_slice(c);
    let v = u64::from_ne_bytes(w) ^ m;
    c.copy_from_slice(&v.to_ne_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(buf: &mut [u8], key: [u8; 4], offset: usize) {
        for (i, b) in buf.iter_mut().enumerate() {
            *b ^= key[(i + offset) & 3];
        }
    }

    #[test]
    fn matches_naive_for_all_lengths_and_offsets() {
        let key = [0x37, 0xfa, 0x21, 0x3d];
        for len in 0..70 {
            for off in 0..8 {
                let data: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
                let mut a = data.clone();
                let mut b = data.clone();
                apply_mask_offset(&mut a, key, off);
                naive(&mut b, key, off);
                assert_eq!(a, b, "len {len} off {off}");
            }
        }
    }

    #[test]
    fn piecewise_equals_whole() {
        let key = [1, 2, 3, 250];
        let data: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
        let mut whole = data.clone();
        apply_mask(&mut whole, key);
        let mut piece = data.clone();
        let mut pos = 0;
        for step in [1usize, 3, 5, 17, 64, 100, 7] {
            let end = (pos + step).min(piece.len());
            apply_mask_offset(&mut piece[pos..end], key, pos);
            pos = end;
        }
        apply_mask_offset(&mut piece[pos..], key, pos);
        assert_eq!(whole, piece);
    }

    #[test]
    fn rfc_example() {
        // RFC 6455 §5.7: masked "Hello".
        let mut p = [0x7f, 0x9f, 0x4d, 0x51, 0x58];
        apply_mask(&mut p, [0x37, 0xfa, 0x21, 0x3d]);
        assert_eq!(&p, b"Hello");
    }
}

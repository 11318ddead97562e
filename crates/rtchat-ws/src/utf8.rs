//! Incremental UTF-8 validation for text messages (RFC 6455 §8.1).
//!
//! A text message may be split over many fragments and each fragment over
//! many TCP reads; a code point may straddle any of those boundaries. The
//! validator remembers at most 3 bytes of an incomplete trailing sequence and
//! reports an error as soon as the bytes seen so far cannot be the prefix of
//! valid UTF-8 ("fail fast"), not only at message end.

use simdutf8::compat::from_utf8;

/// The data fed so far is not a prefix of any valid UTF-8 string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Utf8Error;

impl std::fmt::Display for Utf8Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("invalid UTF-8")
    }
}

impl std::error::Error for Utf8Error {}

/// Streaming UTF-8 validator; feed chunks in order, then call [`finish`](Self::finish).
#[derive(Debug, Clone, Default)]
pub struct Utf8Validator {
    partial: [u8; 4],
    partial_len: u8,
}

/// Length of the sequence introduced by a (valid) lead byte.
fn seq_len(lead: u8) -> usize {
    match lead {
        0xC0..=0xDF => 2,
        0xE0..=0xEF => 3,
        _ => 4,
    }
}

impl Utf8Validator {
    /// A validator at the start of a message.
    pub fn new() -> Self {
        Self::default()
    }

    /// Forgets any incomplete sequence; call at the start of each message.
    pub fn reset(&mut self) {
        self.partial_len = 0;
    }

    /// Validates the next chunk. Fails as soon as the stream so far can no
    /// longer be valid; an incomplete sequence at the end of `data` is kept
    /// and completed by the next chunk.
    pub fn feed(&mut self, mut data: &[u8]) -> Result<(), Utf8Error> {
        if self.partial_len > 0 {
            let have = self.partial_len as usize;
            let need = seq_len(self.partial[0]);
            let take = need.saturating_sub(have).min(data.len());
            self.partial[have..have + take].copy_from_slice(&data[..take]);
            let cur = &self.partial[..have + take];
            match from_utf8(cur) {
                Ok(_) => {
                    self.partial_len = 0;
                    data = &data[take..];
                }
                Err(e) => {
                    if e.error_len().is_some() {
                        return Err(Utf8Error);
                    }
                    // Still incomplete, and `data` is exhausted.
                    self.partial_len = (have + take) as u8;
                    return Ok(());
                }
            }
        }
        match from_utf8(data) {
            Ok(_) => Ok(()),
            Err(e) => {
                if e.error_len().is_some() {
                    return Err(Utf8Error);
                }
                let rest = &data[e.valid_up_to()..];
                if rest.len() > 3 {
                    return Err(Utf8Error);
                }
                self.partial[..rest.len()].copy_from_slice(rest);
                self.partial_len = rest.len() as u8;
                Ok(())
            }
        }
    }

    /// Ends the message: an incomplete trailing sequence is an error.
    pub fn finish(&mut self) -> Result<(), Utf8Error> {
        let incomplete = self.partial_len != 0;
        self.partial_len = 0;
        if incomplete {
            Err(Utf8Error)
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_all_splits(data: &[u8]) {
        let expect = std::str::from_utf8(data).is_ok();
        for a in 0..=data.len() {
            for b in a..=data.len() {
                let mut v = Utf8Validator::new();
                let ok = v.feed(&data[..a]).is_ok()
                    && v.feed(&data[a..b]).is_ok()
                    && v.feed(&data[b..]).is_ok()
                    && v.finish().is_ok();
                assert_eq!(ok, expect, "{data:?} split {a} {b}");
            }
        }
    }

    #[test]
    fn splits() {
        check_all_splits("héllo €𝄞 wörld".as_bytes());
        check_all_splits(&[
            0xce, 0xba, 0xe1, 0xbd, 0xb9, 0xcf, 0x83, 0xce, 0xbc, 0xce, 0xb5,
        ]);
        check_all_splits(&[0xf4, 0x90, 0x80, 0x80]);
        check_all_splits(&[0xed, 0xa0, 0x80]);
        check_all_splits(&[0xe0, 0x80]);
        check_all_splits(&[0x61, 0xf0, 0x9f, 0x98]);
        check_all_splits(&[0xc0, 0xaf]);
    }

    #[test]
    fn fails_fast() {
        // 0xF4 0x90 can never start a valid sequence: reported on the chunk
        // that contains 0x90, before the message ends.
        let mut v = Utf8Validator::new();
        assert!(v.feed(&[b'a', 0xf4]).is_ok());
        assert!(v.feed(&[0x90]).is_err());
        let mut v = Utf8Validator::new();
        assert!(v
            .feed(&[
                0xce, 0xba, 0xe1, 0xbd, 0xb9, 0xcf, 0x83, 0xce, 0xbc, 0xce, 0xb5, 0xed, 0xa0, 0x80
            ])
            .is_err());
    }

    #[test]
    fn incomplete_at_end() {
        let mut v = Utf8Validator::new();
        assert!(v.feed(&[0xe2, 0x82]).is_ok());
        assert!(v.finish().is_err());
    }
}
